// libFuzzer target: the dataset readers for .npy arrays (first byte even) and JSONL rows (first byte odd).
// Every input is rows of ids inside the vocabulary or a memsweep::Error.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "worker/base/error.h"
#include "worker/tasks/token_rows.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  constexpr int64_t vocab = 1000;
  try {
    memsweep::TokenRows rows;
    if (data[0] % 2 == 0) {
      rows = memsweep::parse_npy(data + 1, size - 1, "fuzz.npy", vocab);
    } else {
      std::istringstream in(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
      auto encode = [](const std::string& text) { return std::vector<int64_t>(text.size() % 7, 5); };
      rows = memsweep::parse_jsonl(in, "fuzz.jsonl", vocab, encode, data[0] % 4 == 1);
    }
    for (const auto& row : rows.rows)
      for (int64_t id : row)
        if (id < 0 || id >= vocab) __builtin_trap();
  } catch (const memsweep::Error&) {
  }
  return 0;
}
