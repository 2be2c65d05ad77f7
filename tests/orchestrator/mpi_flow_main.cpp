// The MPI flow without libtorch: the real MPI transport, coordinator and SQLite store, with workers that
// compute deterministic results instead of running models. Driven by test_mpi_flow.py (crashes, signals,
// equality of 1-rank and 3-rank stores).
//
// usage: mpi_flow STUDY.toml STORE.sqlite PID_DIR   (alone or under mpirun)
// env:   MEMSWEEP_TEST_UNIT_SECONDS  time each unit takes (default 0)
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "fake_cluster.h"
#include "orchestrator/scheduler/coordinator.h"
#include "orchestrator/store/store.h"
#include "orchestrator/transport/mpi_transport.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/base/log.h"

namespace {

using namespace memsweep;

volatile std::sig_atomic_t g_terminate = 0, g_drain = 0;
extern "C" void on_signal(int s) { (s == SIGTERM ? g_terminate : g_drain) = 1; }

class SleepyRunner : public UnitRunner {
 public:
  std::string device() const override { return "cpu"; }
  // Sleeps MEMSWEEP_TEST_UNIT_SECONDS in 10 ms "batches", abandoning the unit when asked between two.
  UnitReport run(const UnitOrder& order, const StopCheck& stop) override {
    UnitReport r;
    r.unit = order.unit, r.attempt = order.attempt, r.loaded_model = order.model_name;
    const char* seconds = std::getenv("MEMSWEEP_TEST_UNIT_SECONDS");
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                            std::chrono::duration<double>(seconds ? std::atof(seconds) : 0.0));
    while (std::chrono::steady_clock::now() < end) {
      if (stop()) {
        r.cancelled = true, r.error = "cancelled between batches";
        return r;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.ok = true;
    r.results = memsweep_test::deterministic_results(order);
    return r;
  }
};

int coordinate_here(const std::string& study_path, const std::string& store_path, CoordinatorTransport& transport, int ranks) {
  Study study = load_study(study_path);
  std::vector<DatasetFacts> datasets;
  for (const DatasetEntry& d : study.datasets) datasets.push_back({d.name, sha256_file(d.path), int64_t(d.name.size() * 5)});
  auto store = open_sqlite_store(store_path, study.store.journal_mode);
  store->register_study(study, read_file(study_path), {}, datasets,
                        unit_planner(study, [](const DatasetEntry& d, const ModelEntry&) { return int64_t(d.name.size() * 5); }), false);
  store->requeue_running();
  const int64_t run = store->begin_run({"test", "test", "none", "localhost", ranks});
  CoordinatorHooks hooks;
  hooks.take_stop_request = [] {
    if (g_terminate) return g_terminate = 0, StopRequest::terminate;
    if (g_drain) return g_drain = 0, StopRequest::drain;
    return StopRequest::none;
  };
  hooks.on_progress = [](const Progress& p) { log_info("progress " + std::to_string(p.done) + "/" + std::to_string(p.total)); };
  const RunOutcome outcome = coordinate(study, *store, run, transport, hooks);
  store->end_run(run, run_outcome_name(outcome));
  log_info(std::string("outcome ") + run_outcome_name(outcome));
  if (outcome == RunOutcome::hung) transport.abort(3);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: mpi_flow STUDY.toml STORE.sqlite PID_DIR\n");
    return 2;
  }
  std::signal(SIGTERM, on_signal);
  std::signal(SIGUSR1, on_signal);
  try {
    if (!launched_by_mpi()) {
      std::ofstream(std::string(argv[3]) + "/rank0.pid") << ::getpid() << "\n";
      SleepyRunner runner;
      LocalTransport transport(runner, "localhost", [] { return g_terminate != 0; });
      return coordinate_here(argv[1], argv[2], transport, 1);
    }
    MpiSession mpi;
    set_log_rank(mpi.rank());
    std::ofstream(std::string(argv[3]) + "/rank" + std::to_string(mpi.rank()) + ".pid") << ::getpid() << "\n";
    if (mpi.rank() == 0) return coordinate_here(argv[1], argv[2], *mpi.coordinator_transport(), mpi.size());
    SleepyRunner runner;
    serve_worker(*mpi.worker_transport(), runner, mpi.host(), [] { return g_terminate != 0; });
    return 0;
  } catch (const Error& e) {
    log_error(e.what());
    return 1;
  }
}
