#pragma once
// Rank 0's progress display: a live bar with rate and ETA when stderr is a terminal, a plain line every
// `interval_s` in batch logs (through the logger).
#include <string>

#include "orchestrator/scheduler/coordinator.h"

namespace memsweep {

// "412/1200 units done, 3 failed, 4 running | 2.31 units/s | ETA 5m41s"
std::string progress_line(const Progress& progress);
// "1h02m", "5m41s", "12s", "?" (unknown)
std::string format_duration(double seconds);

class ProgressDisplay {
 public:
  ProgressDisplay(bool terminal, double interval_s) : terminal_(terminal), interval_s_(interval_s) {}
  void update(const Progress& progress);
  void finish();

 private:
  bool terminal_;
  double interval_s_, last_line_s_ = -1e9;
  bool drawn_ = false;
  std::string last_line_;
};

}  // namespace memsweep
