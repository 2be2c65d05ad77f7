#include "orchestrator/cli/signals.h"

#include <csignal>

namespace memsweep {

namespace {
volatile std::sig_atomic_t g_terminate = 0, g_drain = 0;
extern "C" void on_signal(int signal) {
  if (signal == SIGTERM) g_terminate = 1;
  else if (signal == SIGUSR1) g_drain = 1;
}
}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal must not break a write to the store half-way
  sigaction(SIGTERM, &action, nullptr);
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

}  // namespace memsweep
