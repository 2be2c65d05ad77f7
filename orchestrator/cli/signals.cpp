#include "orchestrator/cli/signals.h"

#include <atomic>
#include <csignal>
#include <ctime>

namespace memsweep {

namespace {
volatile std::sig_atomic_t g_terminate = 0, g_drain = 0;   // cleared by take_stop_request
volatile std::sig_atomic_t g_terminate_seen = 0;           // sticky
volatile std::sig_atomic_t g_interrupt_seen = 0;           // sticky: the terminate came from SIGINT (Ctrl-C)
std::atomic<int64_t> g_drain_at_ns{0};                     // CLOCK_MONOTONIC of the first SIGUSR1; 0: none
static_assert(std::atomic<int64_t>::is_always_lock_free, "a signal handler may only touch lock-free atomics");

int64_t monotonic_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);  // async-signal-safe
  return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

extern "C" void on_signal(int signal) {
  if (signal == SIGTERM || signal == SIGINT) {
    g_terminate = 1;
    g_terminate_seen = 1;
    if (signal == SIGINT) g_interrupt_seen = 1;
  } else if (signal == SIGUSR1) {
    g_drain = 1;
    int64_t none = 0;
    g_drain_at_ns.compare_exchange_strong(none, monotonic_ns());
  }
}
}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal must not break a write to the store half-way
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);  // Ctrl-C: as SIGTERM (in-flight units requeued), then exit 130
  sigaction(SIGUSR1, &action, nullptr);
}

StopRequest take_stop_request() {
  if (g_terminate) {
    g_terminate = 0;
    return StopRequest::terminate;
  }
  if (g_drain) {
    g_drain = 0;
    return StopRequest::drain;
  }
  return StopRequest::none;
}

bool terminate_signalled() { return g_terminate_seen != 0; }
bool interrupt_signalled() { return g_interrupt_seen != 0; }

bool drain_grace_passed(double grace_s) {
  const int64_t at = g_drain_at_ns.load();
  return at != 0 && double(monotonic_ns() - at) / 1e9 >= grace_s;
}

}  // namespace memsweep
