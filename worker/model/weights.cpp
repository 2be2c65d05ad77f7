#include "worker/model/weights.h"

#include "worker/base/error.h"

namespace memsweep {
namespace {
torch::ScalarType torch_dtype(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::F32: return torch::kFloat32;
    case DType::F16: return torch::kFloat16;
    case DType::BF16: return torch::kBFloat16;
    case DType::F64: return torch::kFloat64;
    default: throw Error(where + " has dtype " + dtype_name(dtype) + "; model weights must be F32, F16 or BF16");
  }
}
}  // namespace

torch::Tensor WeightLoader::take(const std::string& name, const std::vector<int64_t>& shape) {
  const StoredTensor& source = checkpoint_.take(name);
  const std::string where = source.file + ": tensor '" + name + "'";
  if (source.shape != shape)
    throw Error(where + " has shape " + shape_string(source.shape) + ", expected " + shape_string(shape) +
                " from config.json");
  const torch::ScalarType source_dtype = torch_dtype(source.dtype, where);
  // The mapping outlives the tensor through the deleter's copy of the shared pointer.
  auto keep_mapped = source.mapping;
  torch::Tensor mapped = torch::from_blob(const_cast<uint8_t*>(source.data), shape, source.strides,
                                          [keep_mapped](void*) {}, torch::TensorOptions().dtype(source_dtype));
  const bool aligned = reinterpret_cast<uintptr_t>(source.data) % torch::elementSize(source_dtype) == 0;
  if (source_dtype == dtype_ && device_.is_cpu() && aligned && mapped.is_contiguous()) return mapped;
  return mapped.to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

torch::Tensor WeightLoader::take_first_of(const std::vector<std::string>& names, const std::vector<int64_t>& shape) {
  if (names.size() == 1) return take(names[0], shape);  // the checkpoint's own error when it is absent
  for (const auto& name : names)
    if (checkpoint_.contains(name)) return take(name, shape);
  std::string list;
  for (const auto& name : names) list += (list.empty() ? "'" : " or '") + name + "'";
  throw Error(checkpoint_.directory() + ": checkpoint has no tensor " + list);
}

}  // namespace memsweep
