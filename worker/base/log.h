#pragma once
// The one logger. Every line goes to stderr as "TIME [rank R] [unit U] LEVEL message", TIME in UTC as the store and
// `status` write it (2026-12-07T17:33:02.051Z); library code never prints to stdout (stdout carries command results
// such as JSON).
#include <string>

namespace memsweep {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3 };

void set_log_level(LogLevel level);
// Set once per process (MPI rank) and per work unit; -1 / empty hide the field.
void set_log_rank(int rank);
void set_log_unit(const std::string& unit);

void log(LogLevel level, const std::string& message);
// Now in UTC as the store, `status` and the store's lease record times: 2026-12-07T17:33:02Z.
std::string now_utc();
// A live status line on a terminal (a progress bar): drawn on stderr and redrawn below every log line, so that log
// lines never overwrite it. "" ends it (the cursor moves to a new line).
void set_log_status_line(const std::string& text);
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_warning(const std::string& m) { log(LogLevel::warning, m); }
inline void log_error(const std::string& m) { log(LogLevel::error, m); }

}  // namespace memsweep
