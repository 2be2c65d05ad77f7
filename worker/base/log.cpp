#include "worker/base/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace memsweep {
namespace {
LogLevel g_level = LogLevel::info;
int g_rank = -1;
std::string g_unit;
std::string g_status;  // the live status line, "" when none is drawn
std::mutex g_mutex;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
void set_log_rank(int rank) { g_rank = rank; }
void set_log_unit(const std::string& unit) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_unit = unit;
}

void log(LogLevel level, const std::string& message) {
  if (level < g_level) return;
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  int millis = int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mutex);
  std::string where;
  if (g_rank >= 0) where += " [rank " + std::to_string(g_rank) + "]";
  if (!g_unit.empty()) where += " [unit " + g_unit + "]";
  if (!g_status.empty()) std::fprintf(stderr, "\r\x1b[K");  // the log line takes the status line's place
  std::fprintf(stderr, "%s.%03dZ%s %s: %s\n", stamp, millis, where.c_str(), level_name(level), message.c_str());
  if (!g_status.empty()) std::fprintf(stderr, "%s", g_status.c_str());  // and the status line comes back below it
  std::fflush(stderr);
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

void set_log_status_line(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (text.empty()) {
    if (!g_status.empty()) std::fprintf(stderr, "\n");
  } else {
    std::fprintf(stderr, "\r%s\x1b[K", text.c_str());
  }
  g_status = text;
  std::fflush(stderr);
}

}  // namespace memsweep
