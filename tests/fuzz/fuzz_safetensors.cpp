// libFuzzer target: the safetensors header parser and span validation. Every input is either a valid header or a
// memsweep::Error; anything else (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>

#include "worker/base/error.h"
#include "worker/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = memsweep::parse_safetensors_header(data, size, "fuzz.safetensors");
    for (const auto& tensor : header.tensors) {  // what a loader then reads must lie inside the input
      if (header.data_offset + tensor.end > size) __builtin_trap();
    }
  } catch (const memsweep::Error&) {
  }
  return 0;
}
