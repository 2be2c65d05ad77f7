#include "orchestrator/scheduler/progress.h"

#include <cmath>
#include <cstdio>

#include "worker/base/log.h"

namespace memsweep {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = long(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(text, sizeof text, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%lds", s);
  return text;
}

std::string progress_line(const Progress& p) {
  const double rate = p.elapsed_s > 0 ? double(p.done_this_run) / p.elapsed_s : 0;
  const int64_t left = p.total - p.done - p.failed;
  char text[256];
  std::snprintf(text, sizeof text, "%lld/%lld units done, %lld failed, %lld running | %.3g units/s | ETA %s",
                (long long)p.done, (long long)p.total, (long long)p.failed, (long long)p.running, rate,
                rate > 0 ? format_duration(double(left) / rate).c_str() : (left == 0 ? "0s" : "?"));
  if (p.running == 1 && !p.running_unit.empty()) return text + (" | running " + p.running_unit);  // one process: which unit
  return text;
}

void ProgressDisplay::update(const Progress& p) {
  if (terminal_) {
    const int width = 30;
    const int filled = p.total > 0 ? int(width * double(p.done + p.failed) / double(p.total)) : width;
    set_log_status_line("[" + std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.') + "] " + progress_line(p));
    drawn_ = true;
    return;
  }
  const std::string line = progress_line(p);
  if (line == last_line_ || (p.elapsed_s - last_line_s_ < interval_s_ && p.done + p.failed < p.total)) return;
  last_line_s_ = p.elapsed_s;
  last_line_ = line;
  log_info(line);
}

void ProgressDisplay::finish() {
  if (terminal_ && drawn_) set_log_status_line("");
  drawn_ = false;
}

}  // namespace memsweep
