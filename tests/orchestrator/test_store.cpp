// The SQLite store on in-memory and temporary databases: migrations and the version check, exactly-once
// recording, results recorded under the intervention they name, stale attempts, resume, a changed study or dataset, transactions that roll back, the
// network-file-system table, the per-example columns (every value back bit for bit, detail only on request), and the
// insert rate of per-example rows.
#define BOOST_TEST_MODULE test_store
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>

#include "orchestrator/store/example_columns.h"
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
      r.intervention = row.unit.interventions[i];
      r.totals = {{"examples", double(row.unit.count)}, {"exact_match", double(i)}};
      for (int64_t e = row.unit.first; e < row.unit.first + row.unit.count; ++e)
        r.examples.push_back({e, {{"exact_match", double(e % 2)}}, {}, nlohmann::json{{"tokens", {1, 2}}}});
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

// Results carry their intervention's name: each is recorded under it whatever their order, and a set of results that
// does not name the unit's interventions exactly is refused, naming the unit and the intervention.
BOOST_FIXTURE_TEST_CASE(results_recorded_under_the_intervention_they_name, Fixture) {
  const std::string path = (folder.root() / "named.sqlite").string();
  auto store = open(path);
  const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
  const UnitRow row = store->units()[0];
  BOOST_REQUIRE(row.unit.interventions == (std::vector<std::string>{"baseline", "short_circuit:0", "short_circuit:1"}));
  const int attempt = store->start_attempt(run, row.id, 1, "h", "cpu");
  const std::string unit = "unit " + std::to_string(row.id) + ": ";
  auto refused = [&](const std::vector<ShardResult>& results, const std::string& message) {
    try {
      store->record_done(row.id, attempt, results, 1.0);
      BOOST_ERROR("accepted; expected: " + message);
    } catch (const Error& e) {
      BOOST_TEST(std::string(e.what()).find(message) == 0u, e.what() << " / expected " << message);
    }
  };
  std::vector<ShardResult> stray = results_for(row);
  stray[1].intervention = "zero_attention:1";
  refused(stray, unit + "a result for intervention 'zero_attention:1', which is not one of its 3 interventions");
  std::vector<ShardResult> twice = results_for(row);
  twice[2].intervention = "short_circuit:0";
  refused(twice, unit + "two results for intervention 'short_circuit:0'");
  std::vector<ShardResult> missing = results_for(row);
  missing.pop_back();
  refused(missing, unit + "no result for intervention 'short_circuit:1'");
  BOOST_TEST(unit_status_name(store->units()[0].status) == std::string("running"));  // nothing recorded

  std::vector<ShardResult> reversed = results_for(row);  // exact_match totals 0, 1, 2 in the unit's order
  std::reverse(reversed.begin(), reversed.end());
  BOOST_TEST(store->record_done(row.id, attempt, reversed, 1.0));
  store.reset();
  std::map<std::string, double> exact_match;
  for (const InterventionTotals& t : read_intervention_totals(path)) exact_match[t.intervention] = t.totals.at("exact_match");
  BOOST_TEST(exact_match.at("baseline") == 0.0);
  BOOST_TEST(exact_match.at("short_circuit:0") == 1.0);
  BOOST_TEST(exact_match.at("short_circuit:1") == 2.0);
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

uint64_t bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return b;
}

// Every value a worker may compute comes back bit for bit (NaN as a NaN, -0 as -0), absent values stay absent, and each
// column takes the narrowest encoding that holds it.
BOOST_AUTO_TEST_CASE(example_columns_give_every_value_back) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<std::pair<std::string, std::vector<double>>> cases = {
      {"u8", {0, 1, 255}}, {"u16", {0, 256, 65535}}, {"i32", {-1, 65536, 2147483647.0}},
      {"f32", {0.5, -0.0, inf, -inf, nan, 16777216.0, 0.96875}}, {"f64", {0.1, 1e300, 4294967296.5, nan}},
      {"f64", {-2147483649.0, 1.0 / 3}}};
  for (const auto& [encoding, values] : cases) {
    std::vector<ExampleRecord> records;
    for (size_t i = 0; i < values.size(); ++i) {
      ExampleRecord r;
      r.index = 7 + int64_t(i);
      r.values["x"] = values[i];
      if (i % 2) r.facts["sometimes"] = double(i);  // absent on even examples: a float column
      r.facts["f"] = float(i) / 3.0f;
      records.push_back(r);
    }
    const auto columns = encode_example_columns(records, 7, int64_t(values.size()));
    BOOST_REQUIRE(columns.size() == 3u);
    for (const ExampleColumn& c : columns) {
      if (c.name == "x") BOOST_TEST(column_encoding_name(c.encoding) == encoding);
      if (c.name == "f") BOOST_TEST(column_encoding_name(c.encoding) == std::string("f32"));
      if (c.name == "sometimes") BOOST_TEST(column_encoding_name(c.encoding) == std::string("f32"));
      BOOST_TEST(c.data.size() == values.size() * column_encoding_width(c.encoding));
    }
    const auto back = decode_example_columns(columns, 7, int64_t(values.size()));
    for (size_t i = 0; i < values.size(); ++i) {
      BOOST_TEST(back[i].index == records[i].index);
      BOOST_TEST(back[i].values.size() == 1u);
      BOOST_TEST(back[i].facts.size() == records[i].facts.size());
      const double x = back[i].values.at("x");
      BOOST_TEST((std::isnan(values[i]) ? std::isnan(x) : bits(x) == bits(values[i])), encoding << " value " << values[i] << " came back as " << x);
      for (const auto& [name, value] : records[i].facts) BOOST_TEST(bits(back[i].facts.at(name)) == bits(value));
    }
  }
  // What is not one record per example, in order, is refused, naming what is wrong.
  std::vector<ExampleRecord> two(2);
  two[0].index = 3, two[1].index = 5;
  BOOST_CHECK_EXCEPTION(encode_example_columns(two, 3, 2), Error, [](const Error& e) {
    return std::string(e.what()).find("record 1 is example 5") != std::string::npos;
  });
  BOOST_CHECK_THROW(encode_example_columns(two, 3, 3), Error);
  ExampleColumn short_column{"x", false, ColumnEncoding::f64, std::string(8, '\0')};
  BOOST_CHECK_EXCEPTION(decode_example_columns({short_column}, 0, 2), Error, [](const Error& e) {
    return std::string(e.what()).find("column 'x' holds 8 bytes") != std::string::npos;
  });
}

// Through the store: what a unit recorded is what for_each_example reads back; the detail JSON only with detail = "full".
BOOST_FIXTURE_TEST_CASE(recorded_examples_read_back_and_detail_only_on_request, Fixture) {
  for (const bool full : {false, true}) {
    const std::string path = (folder.root() / (full ? "full.sqlite" : "default.sqlite")).string();
    const std::string file = text() + "[store]\ndetail = \"" + (full ? "full" : "default") + "\"\n";
    study = parse_study(file, "study.toml", folder.root().string());
    BOOST_TEST(study.store.full_detail == full);
    {
      auto store = open_sqlite_store(path, JournalMode::rollback);
      store->register_study(study, file, {{"m", "tokhash"}}, {{"d", "datahash", 10}}, planner(study), false);
      const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
      const UnitRow row = store->units()[0];
      auto results = results_for(row);
      results[0].examples[1].facts = {{"mismatch_token", 50000}, {"mismatch_gap", 0.25}};
      results[0].examples[2].values["completion_entropy"] = 1.0 / 3;
      store->record_done(row.id, store->start_attempt(run, row.id, 1, "h", "cpu"), results, 1.0);
    }
    std::vector<ExampleValues> read;
    for_each_example(path, [&](const ExampleValues& e) { read.push_back(e); });
    BOOST_REQUIRE(read.size() == 3u * 4u);  // 3 interventions x the unit's 4 examples
    BOOST_TEST(read[0].intervention == "baseline");
    BOOST_TEST(read[1].facts.at("mismatch_token") == 50000.0);
    BOOST_TEST(read[1].facts.at("mismatch_gap") == 0.25);
    BOOST_TEST(read[0].facts.empty());  // absent where the worker gave none
    BOOST_TEST(read[2].values.at("completion_entropy") == 1.0 / 3);
    BOOST_TEST(read[3].values.at("exact_match") == 1.0);
    Database db(path, true);
    Statement details = db.prepare("SELECT COUNT(*) FROM example_details");
    details.step();
    BOOST_TEST(details.integer(0) == (full ? 12 : 0));
  }
}

BOOST_FIXTURE_TEST_CASE(summary_and_per_example_insert_rate, Fixture) {
  // A file store in rollback-journal mode, as a study uses it: 3 interventions x 20000 examples in one unit.
  const std::string path = (folder.root() / "rate.sqlite").string();
  study = parse_study(text(20000), "study.toml", folder.root().string());
  auto store = open_sqlite_store(path, JournalMode::rollback);
  store->register_study(study, text(), {{"m", "tokhash"}}, {{"d", "datahash", 20000}}, planner(study, 20000), false);
  const int64_t run = store->begin_run({"0.1.0", "abc", "2.13", "host", 1});
  const UnitRow row = store->units()[0];
  auto results = results_for(row);
  for (ShardResult& r : results)  // a memorization example's numbers: 4 metrics, 3 facts
    for (ExampleRecord& e : r.examples) {
      const double m = double(e.index % 33);
      e.values = {{"exact_match", m == 32}, {"token_accuracy", m / 32}, {"completion_entropy", 1.0 / (1 + m)}, {"match_length", m}};
      e.facts = {{"min_top2_gap", 0.25f / float(1 + m)}};
      if (m < 32) e.facts["mismatch_token"] = double(e.index % 50000), e.facts["mismatch_gap"] = 0.5f / float(1 + m);
    }
  const int attempt = store->start_attempt(run, row.id, 1, "h", "cpu");
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST(store->record_done(row.id, attempt, results, 1.0));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "store: " << 3 * 20000 << " memorization examples x interventions (7 numbers each) recorded in " << seconds
            << " s = " << 60000 / seconds << " per s\n";
  const StoreSummary summary = read_store_summary(path);
  BOOST_REQUIRE(summary.groups.size() == 1u);
  BOOST_TEST(summary.groups[0].done == 1);
  BOOST_TEST(summary.schema_version == latest_schema_version());
  BOOST_TEST(summary.units.at(0).unit.key() == row.unit.key());
  BOOST_TEST(summary.units.at(0).status == "done");
}

}  // namespace
