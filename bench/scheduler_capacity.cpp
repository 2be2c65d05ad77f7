// How many units per second one rank 0 can hand out and record: the real coordinator and SQLite store (a file,
// synchronous = FULL, as `memsweep run` uses it) against a fake cluster of N workers that answer at once with
// deterministic results (tests/orchestrator/fake_cluster.h). The figure bounds how many GPUs one rank 0 feeds:
// GPUs <= units/s x seconds per unit.
//
// usage: scheduler_capacity [WORKERS=512] [UNITS=20000] [EXAMPLES_PER_UNIT=1] [delete|wal] [STORE_DIR]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "orchestrator/scheduler/coordinator.h"
#include "orchestrator/scheduler/scheduler.h"
#include "worker/base/log.h"
#include "tests/orchestrator/fake_cluster.h"
#include "tests/orchestrator/study_fixture.h"

using namespace memsweep;

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 512;
  const int64_t units = argc > 2 ? std::atoll(argv[2]) : 20000;
  const int64_t examples_per_unit = argc > 3 ? std::atoll(argv[3]) : 1;
  const JournalMode journal = argc > 4 && std::string(argv[4]) == "wal" ? JournalMode::wal : JournalMode::rollback;
  set_log_level(LogLevel::warning);
  memsweep_test::StudyFolder folder;
  for (const char* model : {"m1", "m2", "m3", "m4"}) folder.model(model, 2);
  folder.write("d.jsonl", "{}\n");
  const std::string text = "[run]\nunit_size = " + std::to_string(examples_per_unit) +
                           "\n[interventions]\nbaseline = true\n"
                           "[[models]]\nname = \"m1\"\npath = \"m1\"\n[[models]]\nname = \"m2\"\npath = \"m2\"\n"
                           "[[models]]\nname = \"m3\"\npath = \"m3\"\n[[models]]\nname = \"m4\"\npath = \"m4\"\n"
                           "[[datasets]]\nname = \"d\"\nkind = \"memorization\"\npath = \"d.jsonl\"\n";
  const Study study = parse_study(text, "bench.toml", folder.root().string());
  const int64_t examples = units / 4 * examples_per_unit;
  const std::string store_path = (argc > 5 ? std::filesystem::path(argv[5]) : folder.root()) / "bench.sqlite";
  std::filesystem::remove(store_path);
  auto store = open_sqlite_store(store_path, journal);
  store->register_study(study, text, {}, {{"d", "hash", examples}},
                        unit_planner(study, [&](const DatasetEntry&, const ModelEntry&) { return examples; }), false);

  // The pure scheduler alone: one hand-out round for every idle worker over the whole pending list.
  std::vector<PendingUnit> pending;
  for (const UnitRow& row : store->units()) pending.push_back({row.id, row.unit.model});
  std::vector<WorkerView> idle;
  for (int r = 1; r <= workers; ++r) idle.push_back({r, "m" + std::to_string(1 + r % 4), true});
  auto start = std::chrono::steady_clock::now();
  const size_t handed = schedule(pending, idle).size();
  const double schedule_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  memsweep_test::FakeClock clock;
  std::map<int, memsweep_test::Behaviour> behaviours;
  for (int r = 1; r <= workers; ++r) behaviours[r] = memsweep_test::Behaviour::work;
  memsweep_test::FakeCluster cluster(clock, behaviours);
  cluster.work_s = 0;
  CoordinatorHooks hooks;
  hooks.poll_wait_s = 0;
  start = std::chrono::steady_clock::now();
  const RunOutcome outcome = coordinate(study, *store, store->begin_run({}), cluster, hooks);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t done = 0;
  for (const UnitRow& row : store->units()) done += row.status == UnitStatus::done;
  std::printf("schedule(): %zu assignments for %d idle workers over %zu pending units in %.4f s\n", handed, workers,
              pending.size(), schedule_s);
  std::printf("coordinator + SQLite store: %lld units (%lld example rows) to %d fake workers in %.2f s: %.0f units/s, "
              "%.0f example rows/s; journal %s; outcome %s\n",
              (long long)done, (long long)(done * examples_per_unit), workers, seconds, double(done) / seconds,
              double(done * examples_per_unit) / seconds, journal == JournalMode::wal ? "wal" : "delete", run_outcome_name(outcome));
  return outcome == RunOutcome::finished && done == int64_t(store->units().size()) ? 0 : 1;
}
