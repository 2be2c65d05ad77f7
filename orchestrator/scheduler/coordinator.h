#pragma once
// Rank 0's loop: hands units to workers (scheduler.h), records every outcome in the store, retries failures,
// requeues timed-out attempts, and reacts to SIGTERM (requeue in-flight units, stop) and SIGUSR1 (stop handing
// out units, let in-flight ones finish within the grace period). Side effects only through the Store and the
// CoordinatorTransport, so tests drive it with fakes and an in-memory store. libtorch-free.
#include <chrono>
#include <functional>
#include <ostream>
#include <string>

#include "orchestrator/store/store.h"
#include "orchestrator/study/study.h"
#include "orchestrator/transport/transport.h"

namespace memsweep {

enum class StopRequest { none, terminate, drain };

struct Progress {
  int64_t total = 0, done = 0, failed = 0, running = 0, pending = 0;
  std::string running_unit;  // the key of the unit started last (what a single process is computing)
  int64_t done_this_run = 0;
  double elapsed_s = 0;
};

struct CoordinatorHooks {
  // Polled between messages: SIGTERM / SIGUSR1 seen since the last call (signals.h), or none.
  std::function<StopRequest()> take_stop_request = [] { return StopRequest::none; };
  std::function<void(const Progress&)> on_progress = [](const Progress&) {};
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
  double poll_wait_s = 0.2;
};

enum class RunOutcome {
  finished,     // every unit done or failed
  interrupted,  // SIGTERM: in-flight units requeued
  drained,      // SIGUSR1: in-flight units finished or requeued after the grace period
  hung,         // a worker never answered; the caller aborts the job
};
const char* run_outcome_name(RunOutcome outcome);
inline std::ostream& operator<<(std::ostream& out, RunOutcome outcome) { return out << run_outcome_name(outcome); }

// What a worker is sent for an attempt of `row` (batch size: the row's after an out-of-memory retry, else the
// study's).
UnitOrder make_unit_order(const Study& study, const UnitRow& row, int attempt);

// REQUIRES: the study is registered in the store and running units were requeued (resume).
RunOutcome coordinate(const Study& study, Store& store, int64_t run_id, CoordinatorTransport& transport,
                      const CoordinatorHooks& hooks = {});

// Rank 0 failed before coordinating (a refused store, a changed study): every worker is idle after its hello. Sends
// each a stop and takes in their hellos, so that every rank can end normally. False when some worker did not greet
// within wait_s (the caller then aborts the job).
bool stop_idle_workers(CoordinatorTransport& transport, double wait_s);

}  // namespace memsweep
