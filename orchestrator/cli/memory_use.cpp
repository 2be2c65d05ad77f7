#include "orchestrator/cli/memory_use.h"

#include <malloc.h>

#include <chrono>
#include <fstream>
#include <string>

namespace memsweep {

namespace {
double status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) * 1024;  // "VmRSS:   1234 kB"
  return 0;
}
}  // namespace

double resident_bytes() { return status_bytes("VmRSS"); }
// VmHWM is this program's own peak: getrusage's maxrss would start from the parent's before exec.
double peak_resident_bytes() { return status_bytes("VmHWM"); }

double heap_bytes_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 info = mallinfo2();
  return double(info.uordblks + info.hblkhd);
#else
  return 0;
#endif
}

HeapPeak::HeapPeak() {
  peak_ = heap_bytes_in_use();
  sampler_ = std::thread([this] {
    while (!stop_) {
      const double now = heap_bytes_in_use();
      if (now > peak_) peak_ = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
}

HeapPeak::~HeapPeak() {
  stop_ = true;
  sampler_.join();
}

}  // namespace memsweep
