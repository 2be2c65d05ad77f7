#pragma once
// One exception type for every user-facing failure. Messages are complete sentences that name the file,
// key or tensor and say what was expected and what was found; main() prints them and exits non-zero.
#include <stdexcept>
#include <string>

namespace memsweep {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace memsweep
