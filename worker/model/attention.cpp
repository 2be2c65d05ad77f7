#include "worker/model/attention.h"

#include <tuple>

#include "worker/base/error.h"
#include "worker/model/model.h"

namespace memsweep {

const char* attention_mode_name(AttentionMode mode) {
  switch (mode) {
    case AttentionMode::normal: return "normal";
    case AttentionMode::short_circuit: return "short_circuit";
    case AttentionMode::zero_attention: return "zero_attention";
  }
  return "?";
}

namespace {
// "rotate half" rotary on the first r dims of each head; x [B, H, T, hd], cos and sin [B or 1, T, r].
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t r) {
  auto rotated = x.narrow(-1, 0, r);
  auto passed = x.narrow(-1, r, x.size(-1) - r);
  auto first = rotated.narrow(-1, 0, r / 2), second = rotated.narrow(-1, r / 2, r / 2);
  auto rotate_half = torch::cat({-second, first}, -1);
  auto embedded = rotated * cos.unsqueeze(1) + rotate_half * sin.unsqueeze(1);
  return torch::cat({embedded, passed}, -1);
}
}  // namespace

Attention::Attention(const DecoderSpec& spec, int layer, const PartWeights& w)
    : layer_(layer), heads_(spec.num_heads), kv_heads_(spec.num_kv_heads), head_size_(spec.head_size),
      rotary_dims_(spec.positions == Positions::rotary ? spec.rotary_dims : 0), window_(spec.windows.at(size_t(layer))),
      scale_(spec.attention_scale), float32_scores_(spec.float32_scores), rotary_float32_(spec.rotary_float32),
      layout_(spec.qkv_layout), qkv_{w[Role::qkv_weight], w[Role::qkv_bias]}, q_{w[Role::q_weight], w[Role::q_bias]},
      k_{w[Role::k_weight], w[Role::k_bias]}, v_{w[Role::v_weight], w[Role::v_bias]}, out_{w[Role::out_weight], w[Role::out_bias]},
      q_norm_{w[Role::q_norm_weight], {}, spec.norm_eps, spec.norm}, k_norm_{w[Role::k_norm_weight], {}, spec.norm_eps, spec.norm} {}

torch::Tensor Attention::repeat_kv(const torch::Tensor& x) const {
  if (kv_heads_ == heads_) return x;
  const int64_t B = x.size(0), T = x.size(2), group = heads_ / kv_heads_;
  return x.unsqueeze(2).expand({B, kv_heads_, group, T, head_size_}).reshape({B, heads_, T, head_size_});
}

void Attention::set_mode(AttentionMode mode) {
  mode_ = mode;
  value_ = Linear();
  if (mode != AttentionMode::short_circuit) return;
  if (layout_ == QKVLayout::separate) {
    value_ = v_;
    return;
  }
  // The fused projection is head-interleaved: row h*3hd + s*hd + e is (q, k, v)[s] of head h. Keep the v rows, in
  // head order, so short-circuited blocks never compute q and k.
  const int64_t H = heads_, hd = head_size_, d = qkv_.weight.size(1);
  value_.weight = qkv_.weight.view({H, 3, hd, d}).select(1, 2).reshape({H * hd, d}).contiguous();
  if (qkv_.bias.defined()) value_.bias = qkv_.bias.view({H, 3, hd}).select(1, 2).reshape({H * hd}).contiguous();
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> Attention::project(const torch::Tensor& x) const {
  const int64_t B = x.size(0), T = x.size(1), H = heads_, hd = head_size_;
  if (layout_ == QKVLayout::fused_interleaved) {
    auto parts = qkv_(x).view({B, T, H, 3 * hd}).transpose(1, 2).chunk(3, -1);  // [B, H, T, hd] each
    return {parts[0], parts[1], parts[2]};
  }
  auto heads = [&](const torch::Tensor& t, int64_t count) { return t.view({B, T, count, hd}).transpose(1, 2); };
  torch::Tensor q = q_(x), k = k_(x);
  if (q_norm_.weight.defined()) q = q_norm_(q), k = k_norm_(k);
  return {heads(q, H), heads(k, kv_heads_), heads(v_(x), kv_heads_)};
}

torch::Tensor Attention::forward(const torch::Tensor& x, const AttentionInputs& in) const {
  switch (mode_) {
    case AttentionMode::zero_attention: return {};
    case AttentionMode::short_circuit: {  // o_t = v_t, each query head's from the KV head it shares
      torch::Tensor values = value_(x);  // [B, T, K * hd]
      if (kv_heads_ != heads_) {
        const int64_t B = x.size(0), T = x.size(1);
        values = values.view({B, T, kv_heads_, 1, head_size_}).expand({B, T, kv_heads_, heads_ / kv_heads_, head_size_})
                     .reshape({B, T, heads_ * head_size_});
      }
      return out_(values);
    }
    case AttentionMode::normal: break;
  }
  const int64_t B = x.size(0), T = x.size(1);
  auto [q, k, v] = project(x);
  if (rotary_dims_ > 0) {
    const torch::ScalarType dtype = q.scalar_type();
    if (rotary_float32_) q = q.to(torch::kFloat32), k = k.to(torch::kFloat32);
    q = apply_rotary(q, in.cos, in.sin, rotary_dims_).to(dtype);
    k = apply_rotary(k, in.cos, in.sin, rotary_dims_).to(dtype);
  }
  if (in.cache) std::tie(k, v) = in.cache->append(layer_, k, v);  // K heads: the cache holds them unrepeated
  const torch::Tensor own_value = in.row_short_circuit.defined() ? repeat_kv(v.narrow(2, v.size(2) - T, T)) : torch::Tensor();
  k = repeat_kv(k), v = repeat_kv(v);
  torch::Tensor context;  // [B, H, Tq, hd]
  if (in.fused) {
    const std::optional<torch::Tensor> bias = in.causal ? std::optional<torch::Tensor>() : in.bias.at(window_);
    context = at::scaled_dot_product_attention(q, k, v, bias, 0.0, in.causal, scale_);
  } else {
    if (float32_scores_) q = q.to(torch::kFloat32), k = k.to(torch::kFloat32);
    torch::Tensor scores = torch::matmul(q, k.transpose(2, 3));  // [B, H, Tq, Tk]
    if (scale_ != 1) scores = scores * scale_;
    scores = scores + in.bias.at(window_);
    // The softmax accumulates in float32 whatever the activation dtype (transformers 5.x eager does the same).
    context = torch::matmul(torch::softmax(scores, -1, torch::kFloat32).to(v.scalar_type()), v);
  }
  if (in.row_short_circuit.defined()) context = torch::where(in.row_short_circuit.view({B, 1, 1, 1}), own_value, context);
  torch::Tensor out = out_(context.transpose(1, 2).reshape({B, T, heads_ * head_size_}));
  if (in.row_zeroed.defined()) out = out.masked_fill(in.row_zeroed.view({B, 1, 1}), 0);
  return out;
}

}  // namespace memsweep
