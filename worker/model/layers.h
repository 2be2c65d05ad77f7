#pragma once
// The pieces the decoder is built of: linear maps and norms over tensors taken from the checkpoint (by their
// TensorSpec roles), the causal mask and the token positions.
#include <torch/torch.h>

#include <map>

#include "worker/model/spec.h"
#include "worker/model/weights.h"

namespace memsweep {

// A part's tensors (WeightLoader::take_all), by role; undefined for a role the spec does not list (no bias).
struct PartWeights {
  std::map<Role, torch::Tensor> tensors;
  torch::Tensor operator[](Role role) const;
};
PartWeights take_part(WeightLoader& weights, const std::vector<TensorSpec>& tensors);

struct Linear {
  torch::Tensor weight, bias;  // [out, in], [out] or undefined
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::linear(x, weight, bias); }
};

// A norm over the last dimension, as the spec's Norm says.
struct NormLayer {
  torch::Tensor weight, bias;  // bias: layer norms only
  double eps = 1e-5;
  Norm kind = Norm::layer_norm;
  torch::Tensor operator()(const torch::Tensor& x) const;
};

// Additive attention mask [B or 1, 1, Tq, Tk] in `dtype`, for the last Tq of Tk tokens (Tk - Tq came before, in a
// KV cache): 0 where key j may be seen from query i (j <= i, j not padding, and i - j < window when window > 0;
// indices count from the start of the padded sequence), else the dtype's most negative finite value, as
// transformers' eager attention. `mask` [B, Tk] (1 real, 0 padding) or undefined.
torch::Tensor causal_attention_bias(const torch::Tensor& mask, int64_t query_length, int64_t key_length,
                                    torch::ScalarType dtype, torch::Device device, int64_t window = 0);
// Positions of the last `count` of `total` tokens: 0..total-1 without padding; cumsum(mask) - 1 (pads at 0) with
// it, as transformers' generate derives them, so a left-padded row gets the positions it has alone. [B or 1, count].
torch::Tensor token_positions(const torch::Tensor& mask, int64_t total, int64_t count, torch::Device device);

}  // namespace memsweep
