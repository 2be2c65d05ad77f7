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
    : layer_(layer), heads_(spec.num_heads), head_size_(spec.head_size),
      rotary_dims_(spec.positions == Positions::rotary ? spec.rotary_dims : 0), window_(spec.windows.at(size_t(layer))),
      scale_(spec.attention_scale), float32_scores_(spec.float32_scores), layout_(spec.qkv_layout),
      qkv_{w[Role::qkv_weight], w[Role::qkv_bias]}, q_{w[Role::q_weight], w[Role::q_bias]}, k_{w[Role::k_weight], w[Role::k_bias]},
      v_{w[Role::v_weight], w[Role::v_bias]}, out_{w[Role::out_weight], w[Role::out_bias]} {
  if (spec.num_kv_heads != spec.num_heads)
    throw Error(spec.model_type + ": grouped-query attention (" + std::to_string(spec.num_kv_heads) + " KV heads for " +
                std::to_string(spec.num_heads) + " query heads) is not implemented");
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
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, hd}).transpose(1, 2); };
  return {heads(q_(x)), heads(k_(x)), heads(v_(x))};
}

torch::Tensor Attention::forward(const torch::Tensor& x, const AttentionInputs& in) const {
  switch (mode_) {
    case AttentionMode::zero_attention: return {};
    case AttentionMode::short_circuit: return out_(value_(x));  // o_t = v_t
    case AttentionMode::normal: break;
  }
  const int64_t B = x.size(0), T = x.size(1);
  auto [q, k, v] = project(x);
  const torch::Tensor own_value = v;  // what a short-circuited row's attention returns
  if (rotary_dims_ > 0) {
    q = apply_rotary(q, in.cos, in.sin, rotary_dims_);
    k = apply_rotary(k, in.cos, in.sin, rotary_dims_);
  }
  if (in.cache) std::tie(k, v) = in.cache->append(layer_, k, v);
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
