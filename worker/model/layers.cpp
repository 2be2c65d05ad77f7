#include "worker/model/layers.h"
#include <limits>

namespace memsweep {

torch::Tensor PartWeights::operator[](Role role) const {
  auto found = tensors.find(role);
  return found == tensors.end() ? torch::Tensor() : found->second;
}

PartWeights take_part(WeightLoader& weights, const std::vector<TensorSpec>& tensors) {
  PartWeights part;
  for (const TensorSpec& t : tensors) part.tensors[t.role] = weights.take_first_of(t.names, t.shape);
  return part;
}

torch::Tensor NormLayer::operator()(const torch::Tensor& x) const {
  if (kind == Norm::layer_norm) return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  const torch::Tensor x32 = x.to(torch::kFloat32);
  const torch::Tensor normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  if (kind == Norm::rms_norm) return weight * normed.to(x.scalar_type());
  return (weight * normed).to(x.scalar_type());
}

}  // namespace memsweep

namespace memsweep {

static double lowest_finite(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return std::numeric_limits<float>::lowest();
    case torch::kFloat16: return std::numeric_limits<c10::Half>::lowest();
    case torch::kBFloat16: return std::numeric_limits<c10::BFloat16>::lowest();
    case torch::kFloat64: return std::numeric_limits<double>::lowest();
    default: TORCH_CHECK(false, "attention mask for a non-float dtype");
  }
}

torch::Tensor causal_attention_bias(const torch::Tensor& mask, int64_t query_length, int64_t key_length,
                                    torch::ScalarType dtype, torch::Device device, int64_t window) {
  auto options = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto query = torch::arange(key_length - query_length, key_length, options).view({query_length, 1});
  auto key = torch::arange(key_length, options).view({1, key_length});
  torch::Tensor visible = key <= query;
  if (window > 0) visible = visible & (query - key < window);
  visible = visible.view({1, 1, query_length, key_length});
  if (mask.defined()) visible = visible & mask.to(device, torch::kBool).view({mask.size(0), 1, 1, key_length});
  return torch::zeros(visible.sizes(), torch::TensorOptions().dtype(dtype).device(device))
      .masked_fill(visible.logical_not(), lowest_finite(dtype));
}

torch::Tensor token_positions(const torch::Tensor& mask, int64_t total, int64_t count, torch::Device device) {
  auto options = torch::TensorOptions().dtype(torch::kInt64).device(device);
  if (!mask.defined()) return torch::arange(total - count, total, options).unsqueeze(0);
  auto positions = (mask.to(device, torch::kInt64).cumsum(-1) - 1).clamp_min(0);
  return positions.narrow(1, total - count, count);
}

}  // namespace memsweep
