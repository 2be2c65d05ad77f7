#pragma once
// The attention sublayer of every architecture, and every intervention on it. Adding an intervention: a value of
// AttentionMode, its name in attention_mode_name, and its case in Attention::forward (attention.cpp).
#include <torch/torch.h>

#include <map>

#include "worker/model/layers.h"
#include "worker/model/spec.h"

namespace memsweep {

// What a block's attention computes.
enum class AttentionMode {
  normal,
  short_circuit,   // identity attention: each token attends only to itself, o_t = v_t (no Q/K/softmax work)
  zero_attention,  // the attention sublayer's output (after its output projection and bias) is zero
};
const char* attention_mode_name(AttentionMode mode);

struct KVCache;

// Per forward pass, shared by every layer (on the device of the layer running).
struct AttentionInputs {
  torch::Tensor cos, sin;                 // rotary tables [B or 1, Tq, r] in the activation dtype (rotary specs)
  std::map<int64_t, torch::Tensor> bias;  // additive masks by window (0: global), [B or 1, 1, Tq, Tk]; none when causal
  bool causal = false;  // fused, no padding, no cached keys: the kernel's own causal pattern, no mask tensor
  bool fused = false;   // libtorch's scaled_dot_product_attention rather than the eager formula
  KVCache* cache = nullptr;
  torch::Tensor row_short_circuit, row_zeroed;  // [B] bool: the layer's rows under per-row modes (or undefined)
};

class Attention {
 public:
  // `weights`: the block's tensors (the q/k/v or fused projection and the output projection are used here).
  Attention(const DecoderSpec& spec, int layer, const PartWeights& weights);
  void set_mode(AttentionMode mode);
  AttentionMode mode() const { return mode_; }
  // x: the normed block input [B, T, d]. The sublayer's output [B, T, d], or undefined for zero attention (the
  // block then adds nothing). Per-row modes: every row attends normally, then a short-circuited row takes its own
  // value instead of the mix and a zeroed row's output is zero.
  torch::Tensor forward(const torch::Tensor& x, const AttentionInputs& in) const;

 private:
  // q [B, H, T, hd], k and v [B, K, T, hd] (K key/value heads) of x.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> project(const torch::Tensor& x) const;
  // [B, K, T, hd] -> [B, H, T, hd]: each KV head repeated for the H / K query heads that share it.
  torch::Tensor repeat_kv(const torch::Tensor& x) const;

  int layer_;
  int64_t heads_, kv_heads_, head_size_, rotary_dims_, window_;
  double scale_;
  bool float32_scores_, rotary_float32_;
  QKVLayout layout_;
  Linear qkv_, q_, k_, v_, out_;
  NormLayer q_norm_, k_norm_;  // undefined weights unless the spec norms q and k
  AttentionMode mode_ = AttentionMode::normal;
  Linear value_;  // the value projection alone (rows of the fused one): what a short-circuited block computes
};

}  // namespace memsweep
