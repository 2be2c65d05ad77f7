// The SQLite store on in-memory and temporary databases: migrations and the version check, exactly-once
// recording, stale attempts, resume, a changed study or dataset, transactions that roll back, the
// network-file-system table, and the insert rate of per-example rows.
#define BOOST_TEST_MODULE test_store
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <iostream>

#include "orchestrator/store/filesystem.h"
#include "orchestrator/store/sqlite.h"
#include "orchestrator/store/store.h"
#include "orchestrator/store/summary.h"
#include "study_fixture.h"
#include "worker/base/error.h"

namespace {

using namespace memsweep;
using memsweep_test::StudyFolder;

struct Fixture {
  StudyFolder folder;
  Study study;
  std::vector<Unit> units;
  Fixture() {
    folder.model("m", 2);
    folder.write("d.jsonl", "{}\n");
    study = parse_study(text(), "study.toml", folder.root().string());
    units = expand_units(study, [](const DatasetEntry&, const ModelEntry&) { return int64_t(10); });
  }
  // The study's units for 10 examples a dataset, planned against what a store holds.
  static UnitPlanner planner(const Study& s, int64_t examples = 10) {
    return unit_planner(s, [examples](const DatasetEntry&, const ModelEntry&) { return examples; });
  }
  static std::string text(int unit_size = 4) {
    return "[run]\nunit_size = " + std::to_string(unit_size) +
           "\n[interventions]\nsingle_blocks = true\n[[models]]\nname = \"m\"\npath = \"m\"\n"
           "[[datasets]]\nname = \"d\"\nkind = \"memorization\"\npath = \"d.jsonl\"\n";
  }
  std::unique_ptr<Store> open(const std::string& path = ":memory:") {
    auto store = open_sqlite_store(path, JournalMode::rollback);
    store->register_study(study, text(), {{"m", "tokhash"}}, {{"d", "datahash", 10}}, planner(study), false);
    return store;
  }
  static std::vector<ShardResult> results_for(const UnitRow& row) {
    std::vector<ShardResult> results;
    for (size_t i = 0; i < row.unit.interventions.size(); ++i) {
      ShardResult r;
      r.totals = {{"examples", double(row.unit.count)}, {"exact_match", double(i)}};
      for (int64_t e = row.unit.first; e < row.unit.first + row.unit.count; ++e)
        r.examples.push_back({e, {{"exact_match", double(e % 2)}}, nlohmann::json{{"tokens", {1, 2}}}});
      results.push_back(r);
    }
    return results;
  }
};

BOOST_FIXTURE_TEST_CASE(units_registered_once, Fixture) {
  auto store = open();
  auto rows = store->units();
  BOOST_TEST(rows.size() == 3u);  // 10 examples in units of 4, all 3 interventions in one unit
  BOOST_TEST(rows[0].unit.key() == units[0].key());
  BOOST_TEST(rows[0].unit.interventions.size() == 3u);
  BOOST_TEST(store->register_study(study, text(), {{"m", "tokhash"}}, {{"d", "datahash", 10}}, planner(study), false) == 0);
  BOOST_TEST(store->units().size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(results_recorded_exactly_once_for_the_current_attempt, Fixture) {
  auto store = open();
  const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
  const UnitRow row = store->units()[0];
  const int first = store->start_attempt(run, row.id, 1, "host", "cpu");
  BOOST_TEST(first == 1);
  store->requeue(row.id, first, "timeout");
  const int second = store->start_attempt(run, row.id, 2, "host", "cpu");
  BOOST_TEST(second == 2);
  BOOST_TEST(!store->record_done(row.id, first, results_for(row), 1.0));  // stale: discarded
  BOOST_TEST(store->record_done(row.id, second, results_for(row), 1.0));
  BOOST_TEST(!store->record_done(row.id, second, results_for(row), 1.0));  // twice: ignored
  BOOST_TEST(unit_status_name(store->units()[0].status) == std::string("done"));
  BOOST_CHECK_THROW(store->start_attempt(run, row.id, 1, "host", "cpu"), Error);
}

BOOST_FIXTURE_TEST_CASE(failures_retry_then_fail_and_resume_requeues_running, Fixture) {
  auto store = open();
  const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
  const int64_t id = store->units()[1].id;
  int attempt = store->start_attempt(run, id, 1, "h", "cpu");
  store->record_failure(id, attempt, "CUDA out of memory", false, 4);
  BOOST_TEST(store->units()[1].batch_size == 4);
  BOOST_TEST(unit_status_name(store->units()[1].status) == std::string("pending"));
  attempt = store->start_attempt(run, id, 1, "h", "cpu");
  store->record_failure(id, attempt, "bad row 3", true, 0);
  BOOST_TEST(unit_status_name(store->units()[1].status) == std::string("failed"));
  BOOST_TEST(store->units()[1].error == "bad row 3");
  store->start_attempt(run, store->units()[2].id, 1, "h", "cpu");
  BOOST_TEST(store->requeue_running() == 1);
  BOOST_TEST(unit_status_name(store->units()[2].status) == std::string("pending"));
}

BOOST_FIXTURE_TEST_CASE(changed_study_refused_unless_extended, Fixture) {
  auto store = open();
  Study changed = parse_study(text(5), "study.toml", folder.root().string());
  try {
    store->register_study(changed, text(5), {{"m", "tokhash"}}, {{"d", "datahash", 10}}, planner(changed), false);
    BOOST_ERROR("a changed study was accepted");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).find("pass --extend") != std::string::npos, e.what());
  }
  BOOST_TEST(store->units().size() == 3u);  // the refused registration rolled back
  // Another unit size covers nothing new: the store's units already hold every example under every intervention.
  BOOST_TEST(store->register_study(changed, text(5), {{"m", "tokhash"}}, {{"d", "datahash", 10}}, planner(changed), true) == 0);
  BOOST_TEST(store->units().size() == 3u);
  BOOST_CHECK_THROW(store->register_study(changed, text(5), {{"m", "tokhash"}}, {{"d", "otherhash", 10}}, planner(changed), true), Error);
}

// What --extend adds and what it refuses, as a table: each case a change of the study file on a store of text().
BOOST_FIXTURE_TEST_CASE(extension_adds_only_what_is_new_and_refuses_removals, Fixture) {
  folder.model("m2", 2);
  folder.write("e.jsonl", "{}\n");
  const std::string base = text();
  struct Case {
    std::string name, edit_from, edit_to;
    int64_t added;         // units --extend adds; -1: refused
    std::string message;   // part of the refusal
  };
  const Case cases[] = {
      {"a block range", "single_blocks = true", "single_blocks = true\nblocks = [\"0-1\"]", 3, ""},
      {"a dataset", "path = \"d.jsonl\"", "path = \"d.jsonl\"\n[[datasets]]\nname = \"e\"\nkind = \"memorization\"\npath = \"e.jsonl\"", 3, ""},
      {"a model", "path = \"m\"", "path = \"m\"\n[[models]]\nname = \"m2\"\npath = \"m2\"", 3, ""},
      {"interventions per unit", "[run]", "[run]\ninterventions_per_unit = 1", 0, ""},
      {"a block removed", "single_blocks = true", "single_blocks = false", -1, "intervention 'short_circuit:0' of model 'm'"},
      {"dataset options", "path = \"d.jsonl\"", "path = \"d.jsonl\"\noptions = { prefix = 4 }", -1, "dataset 'd' changed"},
  };
  for (const Case& c : cases) {
    auto store = open();
    const std::string changed_text = [&] {
      std::string t = base;
      t.replace(t.find(c.edit_from), c.edit_from.size(), c.edit_to);
      return t;
    }();
    const Study changed = parse_study(changed_text, "study.toml", folder.root().string());
    const std::vector<DatasetFacts> datasets = {{"d", "datahash", 10}, {"e", "ehash", 10}};
    if (c.added < 0) {
      try {
        store->register_study(changed, changed_text, {{"m", "tokhash"}, {"m2", "tokhash"}}, datasets, planner(changed), true);
        BOOST_ERROR(c.name + ": accepted");
      } catch (const Error& e) {
        BOOST_TEST(std::string(e.what()).find(c.message) != std::string::npos, c.name + ": " + e.what());
      }
      BOOST_TEST(store->units().size() == 3u, c.name);
      continue;
    }
    BOOST_TEST(store->register_study(changed, changed_text, {{"m", "tokhash"}, {"m2", "tokhash"}}, datasets, planner(changed), true) ==
                   c.added, c.name);
    // Every (model, dataset, intervention, example) in exactly one unit.
    std::vector<Unit> held;
    for (const UnitRow& row : store->units()) held.push_back(row.unit);
    BOOST_TEST(doubly_covered(held) == 0, c.name);
    BOOST_TEST(expand_units(changed, [](const DatasetEntry&, const ModelEntry&) { return int64_t(10); }, held).empty(), c.name);
  }
}

BOOST_FIXTURE_TEST_CASE(store_newer_than_the_binary_is_refused, Fixture) {
  const std::string path = (folder.root() / "new.sqlite").string();
  open(path).reset();
  {
    Database db(path);
    db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')").bind(1, latest_schema_version() + 1).run();
  }
  try {
    open_sqlite_store(path, JournalMode::rollback);
    BOOST_ERROR("a newer store was opened");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).find("newer than this memsweep knows") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(transaction_rolls_back_in_its_destructor) {
  Database db(":memory:");
  db.execute_script("CREATE TABLE t (x INTEGER)", "test");
  {
    Transaction t(db);
    db.prepare("INSERT INTO t VALUES (?)").bind(1, 1).run();
  }
  {
    Transaction t(db);
    db.prepare("INSERT INTO t VALUES (?)").bind(1, 2).run();
    t.commit();
  }
  Statement s = db.prepare("SELECT COUNT(*), SUM(x) FROM t");
  s.step();
  BOOST_TEST(s.integer(0) == 1);
  BOOST_TEST(s.integer(1) == 2);
}

BOOST_AUTO_TEST_CASE(network_file_systems_by_magic) {
  BOOST_TEST(network_filesystem_for_magic(0x6969) == "NFS");
  BOOST_TEST(network_filesystem_for_magic(0x0BD00BD0) == "Lustre");
  BOOST_TEST(network_filesystem_for_magic(0x47504653) == "GPFS");
  BOOST_TEST(network_filesystem_for_magic(0xEF53) == "");      // ext4
  BOOST_TEST(network_filesystem_for_magic(0x58465342) == "");  // XFS
  BOOST_TEST(network_filesystem_for_magic(0x01021994) == "");  // tmpfs
}

BOOST_FIXTURE_TEST_CASE(summary_and_per_example_insert_rate, Fixture) {
  // A file store in rollback-journal mode, as a study uses it: 3 interventions x 20000 examples in one unit.
  const std::string path = (folder.root() / "rate.sqlite").string();
  study = parse_study(text(20000), "study.toml", folder.root().string());
  auto store = open_sqlite_store(path, JournalMode::rollback);
  store->register_study(study, text(), {{"m", "tokhash"}}, {{"d", "datahash", 20000}}, planner(study, 20000), false);
  const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
  const UnitRow row = store->units()[0];
  const auto results = results_for(row);
  const int attempt = store->start_attempt(run, row.id, 1, "h", "cpu");
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(store->record_done(row.id, attempt, results, 1.0));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "store: " << 3 * 20000 << " per-example rows in " << seconds << " s = " << 60000 / seconds << " rows/s\n";
  const StoreSummary summary = read_store_summary(path);
  BOOST_REQUIRE(summary.groups.size() == 1u);
  BOOST_TEST(summary.groups[0].done == 1);
  BOOST_TEST(summary.schema_version == latest_schema_version());
  BOOST_TEST(summary.units.at(0).unit.key() == row.unit.key());
  BOOST_TEST(summary.units.at(0).status == "done");
}

}  // namespace
