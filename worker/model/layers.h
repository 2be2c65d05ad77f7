#pragma once
// The building blocks shared by the architectures. Each takes its weights by name in its constructor and
// registers them under the checkpoint's own names ("weight", "bias"), so a module's named_parameters()
// are the Hugging Face keys.
#include <torch/torch.h>

#include "worker/model/weights.h"

namespace memsweep {

class LinearImpl : public torch::nn::Module {
 public:
  // weight [out, in]; bias [out] when `bias`.
  LinearImpl(WeightLoader& weights, const std::string& prefix, int64_t in, int64_t out, bool bias);
  torch::Tensor forward(const torch::Tensor& x) const { return torch::linear(x, weight, bias); }
  torch::Tensor weight, bias;  // bias undefined when absent
};
TORCH_MODULE(Linear);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(WeightLoader& weights, const std::string& prefix, int64_t size, double eps);
  torch::Tensor forward(const torch::Tensor& x) const {
    return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  }
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

}  // namespace memsweep

namespace memsweep {

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(WeightLoader& weights, const std::string& prefix, int64_t rows, int64_t size) {
    weight = register_parameter("weight", weights.take(prefix + "weight", {rows, size}), false);
  }
  torch::Tensor forward(const torch::Tensor& ids) const { return torch::embedding(weight, ids); }
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

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
