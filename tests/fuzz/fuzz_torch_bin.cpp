// libFuzzer target: pytorch_model.bin archives (zip directory, restricted unpickler, tensor extents). Every input
// is either a list of tensors inside the input or a memsweep::Error.
#include <cstddef>
#include <cstdint>

#include "worker/base/error.h"
#include "worker/checkpoint/torch_bin.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tensors = memsweep::parse_torch_bin(data, size, "fuzz.bin");
    for (const auto& tensor : tensors) {
      int64_t numel = 1, last = 0;  // last: offset in elements of the highest element addressed
      for (size_t d = 0; d < tensor.shape.size(); ++d) numel *= tensor.shape[d], last += (tensor.shape[d] - 1) * tensor.strides[d];
      const uint8_t* end = tensor.data + (last + 1) * int64_t(memsweep::dtype_size(tensor.dtype));
      if (numel > 0 && (tensor.data < data || end > data + size)) __builtin_trap();
    }
  } catch (const memsweep::Error&) {
  }
  return 0;
}
