#pragma once
// How much memory this process uses, for `eval`'s JSON and bench/peak_memory.py: resident memory (what the system
// charges, allocator fragmentation and mapped files included) and bytes in use on the C/C++ heap (what the tensors
// hold: a CPU's counterpart of a GPU's peak allocated memory), sampled every millisecond while a HeapPeak lives.
#include <atomic>
#include <thread>

namespace memsweep {

// Resident bytes now and at the process's peak (/proc/self/status VmRSS, VmHWM); 0 where unreadable.
double resident_bytes();
double peak_resident_bytes();
// Bytes in use on the heap now (glibc's mallinfo2, mmapped chunks included); 0 on another C library.
double heap_bytes_in_use();

class HeapPeak {
 public:
  HeapPeak();
  ~HeapPeak();
  HeapPeak(const HeapPeak&) = delete;
  HeapPeak& operator=(const HeapPeak&) = delete;
  double peak() const { return peak_.load(); }

 private:
  std::atomic<double> peak_{0};
  std::atomic<bool> stop_{false};
  std::thread sampler_;
};

}  // namespace memsweep
