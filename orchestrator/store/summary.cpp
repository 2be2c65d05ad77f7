#include "orchestrator/store/summary.h"

#include <filesystem>
#include <map>
#include <memory>

#include "orchestrator/store/example_columns.h"
#include "orchestrator/store/sqlite.h"
#include "worker/base/error.h"

namespace memsweep {

namespace {
// The one way this file opens a store: read-only, waiting for a writer's transaction rather than failing.
void open_for_reading(Database& db) { db.prepare("PRAGMA busy_timeout = 10000").run(); }

std::string existing(const std::string& path) {
  if (!std::filesystem::exists(path)) throw Error("no store at " + path);
  return path;
}

// The store's schema version (what it holds differs by version: roles from 3, per-example columns from 4).
int schema_of(Database& db) {
  Statement version = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  version.step();
  return int(version.integer(0));
}
}  // namespace

StoreSummary read_store_summary(const std::string& path) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  StoreSummary summary;
  try {
    summary.schema_version = schema_of(db);
  } catch (const Error&) {
    throw Error(path + " is not a memsweep store (it has no schema_version table)");
  }
  Statement study = db.prepare("SELECT name, file_hash FROM study WHERE id = 1");
  if (study.step()) summary.study_name = study.text(0), summary.study_hash = study.text(1);
  Statement datasets = db.prepare("SELECT name, content_hash FROM datasets");
  while (datasets.step()) summary.dataset_hashes[datasets.text(0)] = datasets.text(1);

  Statement groups = db.prepare(
      "SELECT m.name, d.name, COUNT(*), SUM(u.status = 'done'), SUM(u.status = 'failed'), SUM(u.status = 'running'), "
      "SUM(u.status = 'pending') FROM units u JOIN models m ON m.id = u.model_id JOIN datasets d ON d.id = u.dataset_id "
      "GROUP BY m.id, d.id ORDER BY m.id, d.id");
  while (groups.step())
    summary.groups.push_back({groups.text(0), groups.text(1), groups.integer(2), groups.integer(3), groups.integer(4),
                              groups.integer(5), groups.integer(6)});

  Statement failures = db.prepare(
      "SELECT u.key, a.attempt, COALESCE(a.error, ''), a.worker_rank, a.worker_host, u.status = 'failed' "
      "FROM attempts a JOIN units u ON u.id = a.unit_id WHERE a.outcome = 'failed' ORDER BY a.finished_at DESC, a.unit_id");
  while (failures.step())
    summary.failures.push_back({failures.text(0), failures.text(2), failures.text(4), int(failures.integer(1)),
                                int(failures.integer(3)), failures.integer(5) != 0});

  Statement units = db.prepare(
      "SELECT u.id, m.name, d.name, u.first, u.count, u.status FROM units u JOIN models m ON m.id = u.model_id "
      "JOIN datasets d ON d.id = u.dataset_id ORDER BY u.id");
  std::map<int64_t, size_t> position;
  while (units.step()) {
    position[units.integer(0)] = summary.units.size();
    summary.units.push_back({Unit{units.text(1), units.text(2), units.integer(3), units.integer(4), {}}, units.text(5)});
  }
  Statement interventions = db.prepare(
      "SELECT ui.unit_id, iv.name FROM unit_interventions ui JOIN interventions iv ON iv.id = ui.intervention_id "
      "ORDER BY ui.unit_id, ui.position");
  while (interventions.step()) summary.units[position.at(interventions.integer(0))].unit.interventions.push_back(interventions.text(1));

  Statement runs = db.prepare(
      "SELECT (SELECT COUNT(*) FROM runs), r.started_at, COALESCE(r.outcome, ''), "
      "(SELECT COUNT(*) FROM attempts a WHERE a.run_id = r.id AND a.outcome = 'done'), "
      "COALESCE((SELECT MAX(strftime('%s', a.finished_at)) FROM attempts a WHERE a.run_id = r.id AND a.outcome = 'done') "
      "- strftime('%s', r.started_at), 0) FROM runs r ORDER BY r.id DESC LIMIT 1");
  if (runs.step()) {
    summary.runs = runs.integer(0);
    summary.last_run_started = runs.text(1);
    summary.last_run_outcome = runs.text(2);
    summary.done_in_last_run = runs.integer(3);
    summary.last_run_seconds = runs.real(4);
  }
  return summary;
}

std::vector<InterventionTotals> read_intervention_totals(const std::string& path) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  std::vector<InterventionTotals> rows;
  // Roles: recorded since schema 3, the kind's default before.
  std::map<std::string, std::string> roles;
  if (schema_of(db) >= 3) {
    Statement r = db.prepare("SELECT name, role FROM datasets");
    while (r.step()) roles[r.text(0)] = r.text(1);
  }
  Statement s = db.prepare(
      "SELECT m.name, d.name, d.kind, i.name, SUM(u.status = 'done'), COUNT(*), "
      "json_group_array(CASE WHEN g.totals_json IS NULL THEN NULL ELSE json(g.totals_json) END), d.options_json, m.num_layers "
      "FROM units u JOIN unit_interventions ui ON ui.unit_id = u.id JOIN interventions i ON i.id = ui.intervention_id "
      "JOIN models m ON m.id = u.model_id JOIN datasets d ON d.id = u.dataset_id "
      "LEFT JOIN aggregates g ON g.unit_id = u.id AND g.intervention_id = i.id "
      "GROUP BY m.id, d.id, i.id ORDER BY m.id, d.id, MIN(u.id * 1000 + ui.position)");
  while (s.step()) {
    InterventionTotals row{s.text(0), s.text(1), s.text(2), s.text(3), s.integer(4), s.integer(5), {}, {},
                           nlohmann::json::parse(s.text(7)), int(s.integer(8)), ""};
    row.role = roles.count(row.dataset) ? roles.at(row.dataset) : default_role(row.kind);
    for (const auto& totals : nlohmann::json::parse(s.text(6)))
      if (!totals.is_null()) add_totals(row.totals, totals.get<Values>());
    if (row.units_done > 0) row.metrics = finalize_metrics(row.kind, row.totals);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<RunRecord> read_runs(const std::string& path) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  std::vector<RunRecord> runs;
  Statement s = db.prepare(
      "SELECT r.id, r.memsweep_version, r.git_commit, r.libtorch_version, r.host, r.ranks, r.started_at, "
      "COALESCE(r.ended_at, ''), COALESCE(r.outcome, ''), "
      "COALESCE((SELECT group_concat(device, ', ') FROM (SELECT DISTINCT a.device FROM attempts a WHERE a.run_id = r.id "
      "ORDER BY a.device)), '') FROM runs r ORDER BY r.id");
  while (s.step()) {
    RunRecord run{s.integer(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(6), s.text(7), s.text(8), int(s.integer(5)), {}};
    const std::string devices = s.text(9);
    for (size_t start = 0; start < devices.size();) {
      size_t end = devices.find(", ", start);
      if (end == std::string::npos) end = devices.size();
      run.devices.push_back(devices.substr(start, end - start));
      start = end + 2;
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

namespace {
// The done units' per-example values, a unit's examples under one intervention at a time, decoded; `order` continues
// "ORDER BY m.id, d.id, " (then unit order within an intervention).
struct ChunkOf {
  std::string model, dataset, kind, intervention;
};
void for_each_chunk(Database& db, const std::string& path, const std::string& order,
                    const std::function<void(const ChunkOf&, std::vector<ExampleRecord>&)>& visit) {
  if (const int version = schema_of(db); version < 4)
    throw Error("the store " + path + " has schema " + std::to_string(version) + ": its per-example values are read from schema 4 on "
                "(`memsweep run` on its study converts them)");
  Statement s = db.prepare(
      "SELECT v.unit_id, v.intervention_id, u.first, u.count, m.name, d.name, d.kind, i.name, v.name, v.fact, v.encoding, v.data "
      "FROM example_values v JOIN units u ON u.id = v.unit_id JOIN models m ON m.id = u.model_id "
      "JOIN datasets d ON d.id = u.dataset_id JOIN interventions i ON i.id = v.intervention_id "
      "WHERE u.status = 'done' ORDER BY m.id, d.id, " + order + ", u.first, v.unit_id");
  std::vector<ExampleColumn> columns;
  ChunkOf at;
  int64_t unit = -1, intervention = -1, first = 0, count = 0;
  auto flush = [&] {
    if (columns.empty()) return;
    std::vector<ExampleRecord> examples = decode_example_columns(columns, first, count);
    visit(at, examples);
    columns.clear();
  };
  while (s.step()) {
    if (s.integer(0) != unit || s.integer(1) != intervention) flush();
    unit = s.integer(0), intervention = s.integer(1), first = s.integer(2), count = s.integer(3);
    at = {s.text(4), s.text(5), s.text(6), s.text(7)};
    columns.push_back({s.text(8), s.integer(9) != 0, parse_column_encoding(s.text(10)), s.blob(11)});
  }
  flush();
}
}  // namespace

void for_each_example(const std::string& path, const std::function<void(const ExampleValues&)>& visit) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  ExampleValues at;
  for_each_chunk(db, path, "v.intervention_id", [&](const ChunkOf& chunk, std::vector<ExampleRecord>& examples) {
    at.model = chunk.model, at.dataset = chunk.dataset, at.intervention = chunk.intervention;
    for (ExampleRecord& e : examples) {
      at.index = e.index, at.values = std::move(e.values), at.facts = std::move(e.facts);
      visit(at);
    }
  });
}

StoreStatistics read_statistics(const std::string& path, int bootstrap_threads) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  StoreStatistics out;
  if (schema_of(db) < 4) return out;
  std::unique_ptr<DatasetStatistics> group;
  std::string model, dataset;
  auto finish = [&] {
    if (!group) return;
    for (auto& [intervention, s] : group->finish(bootstrap_threads)) out[{model, dataset, intervention}] = std::move(s);
    group.reset();
  };
  // Per model and dataset the baseline's units first: the paired differences join each example to its baseline value.
  for_each_chunk(db, path, "i.name <> 'baseline', v.intervention_id", [&](const ChunkOf& chunk, std::vector<ExampleRecord>& examples) {
    if (!group || chunk.model != model || chunk.dataset != dataset) {
      finish();
      model = chunk.model, dataset = chunk.dataset;
      group = std::make_unique<DatasetStatistics>(chunk.kind);
    }
    group->add(chunk.intervention, examples);
  });
  finish();
  return out;
}

std::vector<RowFlips> read_row_flips(const std::string& path) {
  Database db(existing(path), /*read_only=*/true);
  open_for_reading(db);
  std::vector<RowFlips> out;
  if (schema_of(db) < 4) return out;
  auto row = [&](const std::string& model, const std::string& dataset) -> RowFlips& {
    for (RowFlips& r : out)
      if (r.model == model && r.dataset == dataset) return r;
    out.push_back({model, dataset, 0, 0, {}});
    return out.back();
  };
  Statement memorized = db.prepare(
      "SELECT model, dataset, COALESCE(SUM(exact_match), 0) FROM exact_match WHERE intervention = 'baseline' GROUP BY model, dataset");
  while (memorized.step()) row(memorized.text(0), memorized.text(1)).memorized = memorized.integer(2);
  Statement surviving = db.prepare("SELECT model, dataset, COUNT(*) FROM surviving_rows GROUP BY model, dataset");
  while (surviving.step()) row(surviving.text(0), surviving.text(1)).surviving = surviving.integer(2);
  Statement flips = db.prepare(
      "SELECT model, dataset, intervention, SUM(baseline_exact_match = 1), SUM(baseline_exact_match = 0) FROM flipped_rows "
      "GROUP BY model, dataset, intervention");
  while (flips.step()) row(flips.text(0), flips.text(1)).flips[flips.text(2)] = {flips.integer(3), flips.integer(4)};
  return out;
}

std::string double_coverage_warning(const StoreSummary& summary) {
  std::vector<Unit> held;
  for (const HeldUnit& h : summary.units) held.push_back(h.unit);
  const int64_t twice = doubly_covered(held);
  if (!twice) return "";
  return "warning: " + std::to_string(twice) + " (model, dataset, intervention, example) results are covered by two units of "
         "this store (an --extend of a memsweep before store schema 2 recomputed them); its metrics count each of them twice";
}

}  // namespace memsweep
