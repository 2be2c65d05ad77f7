// The scheduler as a table of (pending units, workers) -> assignments, and the coordinator over a fake
// cluster and a real store: equal results for any number of workers, retries, out-of-memory halving,
// timeouts and stale answers, hung workers, SIGTERM, SIGUSR1 and a crash of rank 0 followed by a resume.
#define BOOST_TEST_MODULE test_scheduler
#include <boost/test/unit_test.hpp>

#include <iostream>
#include <set>

#include "fake_cluster.h"
#include "orchestrator/scheduler/coordinator.h"
#include "orchestrator/scheduler/progress.h"
#include "orchestrator/scheduler/scheduler.h"
#include "orchestrator/store/sqlite.h"
#include "orchestrator/store/summary.h"
#include "study_fixture.h"

namespace {

using namespace memsweep;
using namespace memsweep_test;

std::string assignments_text(const std::vector<Assignment>& assignments) {
  std::string text;
  for (const Assignment& a : assignments) text += (text.empty() ? "" : " ") + std::to_string(a.rank) + ":" + std::to_string(a.unit);
  return text;
}

struct ScheduleCase {
  const char* what;
  std::vector<PendingUnit> pending;
  std::vector<WorkerView> workers;
  const char* expected;  // rank:unit ...
};

BOOST_AUTO_TEST_CASE(schedule_table) {
  const std::vector<PendingUnit> ab = {{1, "a"}, {2, "a"}, {3, "a"}, {4, "b"}, {5, "b"}};
  const std::vector<ScheduleCase> cases = {
      {"nothing pending", {}, {{1, "", true}}, ""},
      {"no idle worker", ab, {{1, "a", false}}, ""},
      {"fresh workers spread over models by remaining work", ab, {{1, "", true}, {2, "", true}, {3, "", true}}, "1:1 2:4 3:2"},
      {"a worker keeps its model", ab, {{1, "b", true}, {2, "a", true}}, "1:4 2:1"},
      {"a worker whose model is finished moves to the largest share", ab, {{1, "c", true}, {2, "a", false}}, "1:4"},
      {"a busy holder counts: the idle one goes elsewhere", {{1, "a"}, {2, "b"}}, {{1, "a", false}, {2, "", true}}, "2:2"},
      {"more workers than units", {{7, "a"}}, {{1, "", true}, {2, "", true}}, "1:7"},
      {"affinity before moving", {{1, "a"}, {2, "b"}}, {{1, "", true}, {2, "b", true}}, "2:2 1:1"},
  };
  for (const ScheduleCase& c : cases) BOOST_TEST(assignments_text(schedule(c.pending, c.workers)) == c.expected, c.what);
}

struct Fixture {
  StudyFolder folder;
  Study study;
  FakeClock clock;
  CoordinatorHooks hooks;
  Fixture(const std::string& run_settings = "") {
    folder.model("m1", 3);
    folder.model("m2", 2);
    folder.write("d1.jsonl", "{}\n");
    folder.write("d2.jsonl", "{}\n");
    study = parse_study(text(run_settings), "study.toml", folder.root().string());
    hooks.now = [this] { return clock.now; };
    hooks.poll_wait_s = 1;
  }
  static std::string text(const std::string& run_settings) {
    return "[run]\nunit_size = 3\nunit_timeout_s = 30\ndrain_grace_s = 20\nbatch_size = 8\n" +
           (run_settings.empty() ? "attempts = 2" : run_settings) +
           "\n[interventions]\nsingle_blocks = true\n"
           "[[models]]\nname = \"m1\"\npath = \"m1\"\n[[models]]\nname = \"m2\"\npath = \"m2\"\n"
           "[[datasets]]\nname = \"d1\"\nkind = \"memorization\"\npath = \"d1.jsonl\"\n"
           "[[datasets]]\nname = \"d2\"\nkind = \"memorization\"\npath = \"d2.jsonl\"\nmodels = [\"m2\"]\n";
  }
  std::unique_ptr<Store> open(const std::string& name) {
    auto store = open_sqlite_store((folder.root() / name).string(), JournalMode::rollback);
    store->register_study(study, "text", {{"m1", ""}, {"m2", ""}}, {{"d1", "h1", 10}, {"d2", "h2", 7}},
                          unit_planner(study, [](const DatasetEntry& d, const ModelEntry&) { return int64_t(d.name == "d1" ? 10 : 7); }),
                          false);
    store->requeue_running();
    return store;
  }
  // Every stored aggregate and example, as text: equal stores give equal text.
  std::string contents(const std::string& name) {
    Database db((folder.root() / name).string(), true);
    std::string text;
    Statement a = db.prepare(
        "SELECT u.key, i.name, g.totals_json FROM aggregates g JOIN units u ON u.id = g.unit_id "
        "JOIN interventions i ON i.id = g.intervention_id ORDER BY u.key, i.name");
    while (a.step()) text += a.text(0) + " " + a.text(1) + " " + a.text(2) + "\n";
    std::set<std::string> examples;  // every (model, dataset, intervention, example) once, sorted
    for_each_example((folder.root() / name).string(), [&](const ExampleValues& x) {
      const std::string line = x.model + "/" + x.dataset + "/" + x.intervention + "/" + std::to_string(x.index) + " " +
                               nlohmann::json(x.values).dump() + "\n";
      BOOST_TEST(examples.insert(line).second, "recorded twice: " + line);
    });
    for (const std::string& line : examples) text += line;
    return text;
  }
  int64_t count(const std::string& name, const std::string& status) {
    Database db((folder.root() / name).string(), true);
    Statement s = db.prepare("SELECT COUNT(*) FROM units WHERE status = ?");
    s.bind(1, status).step();
    return s.integer(0);
  }
};

// m1: d1 (4 units); m2: d1 (4) + d2 (3) = 11 units.
const int64_t kUnits = 11;

BOOST_FIXTURE_TEST_CASE(same_results_for_one_and_three_workers, Fixture) {
  auto one = open("one.sqlite");
  FakeCluster single(clock, {{0, Behaviour::work}});
  BOOST_TEST(coordinate(study, *one, one->begin_run({}), single, hooks) == RunOutcome::finished);
  auto three = open("three.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::work}, {2, Behaviour::work}, {3, Behaviour::work}});
  BOOST_TEST(coordinate(study, *three, three->begin_run({}), cluster, hooks) == RunOutcome::finished);
  BOOST_TEST(count("three.sqlite", "done") == kUnits);
  BOOST_TEST(contents("one.sqlite") == contents("three.sqlite"));
  BOOST_TEST(cluster.stopped.size() == 3u);
  // Model affinity: a worker keeps its model while it has units and never returns to a model it left.
  std::map<int, std::vector<std::string>> sequence;
  for (const auto& [rank, order] : cluster.orders)
    if (sequence[rank].empty() || sequence[rank].back() != order.model_name) sequence[rank].push_back(order.model_name);
  for (const auto& [rank, models] : sequence) BOOST_TEST(std::set<std::string>(models.begin(), models.end()).size() == models.size());
  BOOST_TEST(single.loads[0] == 2);  // one worker: each model once
  // Two workers, two models: each starts on its own model (a worker just handed a model counts as holding
  // it), so at most one more load happens when the smaller model runs out.
  auto two = open("two.sqlite");
  FakeCluster pair(clock, {{1, Behaviour::work}, {2, Behaviour::work}});
  coordinate(study, *two, two->begin_run({}), pair, hooks);
  BOOST_TEST(pair.orders.at(0).second.model_name != pair.orders.at(1).second.model_name);
  BOOST_TEST(pair.loads[1] + pair.loads[2] <= 3);
}

BOOST_FIXTURE_TEST_CASE(failures_are_retried_and_out_of_memory_halves_the_batch, Fixture) {
  auto store = open("s.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::fail_once}, {2, Behaviour::out_of_memory_once}});
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::finished);
  BOOST_TEST(count("s.sqlite", "done") == kUnits);
  int halved = 0;
  for (const auto& [rank, order] : cluster.orders) halved += order.batch_size == 4;
  BOOST_TEST(halved == 1);
  BOOST_TEST(cluster.orders.size() == size_t(kUnits + 2));
  auto reference = open("r.sqlite");
  FakeCluster plain(clock, {{1, Behaviour::work}});
  coordinate(study, *reference, reference->begin_run({}), plain, hooks);
  BOOST_TEST(contents("s.sqlite") == contents("r.sqlite"));
}

BOOST_AUTO_TEST_CASE(a_unit_failing_every_attempt_is_recorded_failed) {
  Fixture f("attempts = 1");
  auto store = f.open("s.sqlite");
  FakeCluster cluster(f.clock, {{1, Behaviour::fail_once}});
  BOOST_TEST(coordinate(f.study, *store, store->begin_run({}), cluster, f.hooks) == RunOutcome::finished);
  BOOST_TEST(f.count("s.sqlite", "failed") == 1);
  BOOST_TEST(f.count("s.sqlite", "done") == kUnits - 1);
}

BOOST_FIXTURE_TEST_CASE(timeouts_requeue_and_stale_answers_are_discarded, Fixture) {
  auto store = open("s.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::late}, {2, Behaviour::work}});
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::finished);
  BOOST_TEST(count("s.sqlite", "done") == kUnits);
  auto reference = open("r.sqlite");
  FakeCluster plain(clock, {{1, Behaviour::work}});
  coordinate(study, *reference, reference->begin_run({}), plain, hooks);
  BOOST_TEST(contents("s.sqlite") == contents("r.sqlite"));
}

BOOST_FIXTURE_TEST_CASE(a_hung_worker_ends_the_run_as_hung_once_the_rest_is_done, Fixture) {
  auto store = open("s.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::hang}, {2, Behaviour::work}});
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::hung);
  BOOST_TEST(count("s.sqlite", "done") == kUnits);
  BOOST_TEST(cluster.stopped == std::vector<int>{2});
}

BOOST_FIXTURE_TEST_CASE(sigterm_requeues_in_flight_units, Fixture) {
  auto store = open("s.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::work}, {2, Behaviour::hang}});
  int polls = 0;
  hooks.take_stop_request = [&] { return ++polls == 6 ? StopRequest::terminate : StopRequest::none; };
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::hung);  // rank 2 never answers
  BOOST_TEST(count("s.sqlite", "running") == 0);
  BOOST_TEST(count("s.sqlite", "done") + count("s.sqlite", "pending") == kUnits);
  // Rerun: the rest is done, each unit once.
  auto again = open("s.sqlite");
  FakeCluster fine(clock, {{1, Behaviour::work}});
  hooks.take_stop_request = [] { return StopRequest::none; };
  BOOST_TEST(coordinate(study, *again, again->begin_run({}), fine, hooks) == RunOutcome::finished);
  auto reference = open("r.sqlite");
  FakeCluster plain(clock, {{1, Behaviour::work}});
  coordinate(study, *reference, reference->begin_run({}), plain, hooks);
  BOOST_TEST(contents("s.sqlite") == contents("r.sqlite"));
}

BOOST_FIXTURE_TEST_CASE(sigusr1_drains_then_requeues_after_the_grace_period, Fixture) {
  auto store = open("s.sqlite");
  FakeCluster cluster(clock, {{1, Behaviour::work}, {2, Behaviour::late}});
  cluster.late_s = 24;
  int polls = 0;
  hooks.take_stop_request = [&] { return ++polls == 4 ? StopRequest::drain : StopRequest::none; };
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::drained);
  // Rank 1's unit finished (5 s); rank 2's (24 s) passed the 20 s grace, was requeued, and its answer discarded.
  BOOST_TEST(count("s.sqlite", "done") == 1);
  BOOST_TEST(count("s.sqlite", "pending") == kUnits - 1);
  BOOST_TEST(cluster.orders.size() == 2u);
}

// Rank 0 dies between two commits (the store throws on the 4th result), then the study is rerun.
class CrashingStore : public Store {
 public:
  CrashingStore(Store& inner, int crash_at) : inner_(inner), crash_at_(crash_at) {}
  int64_t register_study(const Study& s, const std::string& t, const std::vector<ModelFacts>& m, const std::vector<DatasetFacts>& d,
                         const UnitPlanner& p, bool e) override { return inner_.register_study(s, t, m, d, p, e); }
  int64_t begin_run(const Provenance& p) override { return inner_.begin_run(p); }
  void end_run(int64_t r, const std::string& o) override { inner_.end_run(r, o); }
  int requeue_running() override { return inner_.requeue_running(); }
  int retry_failed() override { return inner_.retry_failed(); }
  std::vector<UnitRow> units() override { return inner_.units(); }
  int start_attempt(int64_t r, int64_t u, int k, const std::string& h, const std::string& d) override { return inner_.start_attempt(r, u, k, h, d); }
  bool record_done(int64_t u, int a, const std::vector<ShardResult>& r, double s) override {
    if (++calls_ == crash_at_) throw Error("simulated crash");
    return inner_.record_done(u, a, r, s);
  }
  void record_failure(int64_t u, int a, const std::string& e, bool f, int b) override { inner_.record_failure(u, a, e, f, b); }
  void requeue(int64_t u, int a, const std::string& w) override { inner_.requeue(u, a, w); }

 private:
  Store& inner_;
  int crash_at_, calls_ = 0;
};

BOOST_FIXTURE_TEST_CASE(crash_of_rank_0_then_resume_records_every_unit_once, Fixture) {
  {
    auto store = open("s.sqlite");
    CrashingStore crashing(*store, 4);
    FakeCluster cluster(clock, {{1, Behaviour::work}, {2, Behaviour::work}});
    BOOST_CHECK_THROW(coordinate(study, crashing, store->begin_run({}), cluster, hooks), Error);
  }
  BOOST_TEST(count("s.sqlite", "done") == 3);
  BOOST_TEST(count("s.sqlite", "running") >= 1);
  auto store = open("s.sqlite");  // open() requeues what was running, as `memsweep run` does
  FakeCluster cluster(clock, {{1, Behaviour::work}, {2, Behaviour::work}, {3, Behaviour::work}});
  BOOST_TEST(coordinate(study, *store, store->begin_run({}), cluster, hooks) == RunOutcome::finished);
  BOOST_TEST(cluster.orders.size() == size_t(kUnits - 3));
  auto reference = open("r.sqlite");
  FakeCluster plain(clock, {{1, Behaviour::work}});
  coordinate(study, *reference, reference->begin_run({}), plain, hooks);
  BOOST_TEST(contents("s.sqlite") == contents("r.sqlite"));
}

BOOST_AUTO_TEST_CASE(scheduler_rate) {
  // The pure scheduler on a large grid: 16 workers, 2 models, 20000 pending units handed out 16 at a time.
  std::vector<PendingUnit> pending;
  for (int64_t i = 0; i < 2000; ++i) pending.push_back({i, i % 2 ? "a" : "b"});
  std::vector<WorkerView> workers;
  for (int r = 1; r <= 16; ++r) workers.push_back({r, r % 2 ? "a" : "b", true});
  const auto start = std::chrono::steady_clock::now();
  size_t handed = 0;
  for (int round = 0; round < 100; ++round) handed += schedule(pending, workers).size();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST(handed == 1600u);
  std::cout << "scheduler: " << handed / s << " assignments/s with 2000 pending units and 16 workers\n";
}

BOOST_AUTO_TEST_CASE(progress_lines) {
  Progress p;
  p.total = 100, p.done = 40, p.failed = 2, p.running = 3, p.done_this_run = 20, p.elapsed_s = 10;
  BOOST_TEST(progress_line(p) == "40/100 units done, 2 failed, 3 running | 2 units/s | ETA 29s");
  BOOST_TEST(format_duration(3725) == "1h02m");
  BOOST_TEST(format_duration(-1) == "?");
}

}  // namespace
