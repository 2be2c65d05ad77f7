// The SQLite store: migrations, connection settings and the statements rank 0 runs.
#include <chrono>
#include <filesystem>
#include <map>

#include "orchestrator/store/example_columns.h"
#include "orchestrator/store/filesystem.h"
#include "orchestrator/store/migrations.h"
#include "orchestrator/store/sqlite.h"
#include "orchestrator/store/store.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace memsweep {

const char* unit_status_name(UnitStatus status) {
  switch (status) {
    case UnitStatus::pending: return "pending";
    case UnitStatus::running: return "running";
    case UnitStatus::done: return "done";
    case UnitStatus::failed: return "failed";
  }
  return "?";
}

namespace {

UnitStatus parse_status(const std::string& name) {
  for (UnitStatus s : {UnitStatus::pending, UnitStatus::running, UnitStatus::done, UnitStatus::failed})
    if (name == unit_status_name(s)) return s;
  throw Error("store: unknown unit status '" + name + "'");
}

// The store's connection settings, all in one place. The journal mode is chosen from a fixed list.
void configure_connection(Database& db, JournalMode mode) {
  db.prepare("PRAGMA foreign_keys = ON").run();
  db.prepare("PRAGMA busy_timeout = 10000").run();
  if (mode == JournalMode::wal) {
    db.prepare("PRAGMA journal_mode = WAL").run();
    db.prepare("PRAGMA synchronous = NORMAL").run();  // WAL with NORMAL is durable up to the last checkpoint
  } else {
    db.prepare("PRAGMA journal_mode = DELETE").run();
    db.prepare("PRAGMA synchronous = FULL").run();
  }
}

int schema_version(Database& db) {
  db.prepare("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)").run();
  Statement s = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  s.step();
  return int(s.integer(0));
}

void insert_columns(Database& db, int64_t unit, int64_t intervention, const std::vector<ExampleColumn>& columns) {
  Statement insert = db.prepare("INSERT INTO example_values (unit_id, intervention_id, name, fact, encoding, data) VALUES (?, ?, ?, ?, ?, ?)");
  for (const ExampleColumn& c : columns)
    insert.bind(1, unit).bind(2, intervention).bind(3, c.name).bind(4, int64_t(c.fact)).bind(5, column_encoding_name(c.encoding))
        .bind_blob(6, c.data).run();
}

// Migration 4's data step: the JSON rows of `examples`, per unit and intervention, become columns (their detail is
// kept in example_details), then the table goes. A done unit whose rows do not cover its examples is an error.
void convert_example_rows(Database& db) {
  Statement rows = db.prepare(
      "SELECT x.unit_id, x.intervention_id, x.example_index, x.values_json, x.detail_json, u.first, u.count FROM examples x "
      "JOIN units u ON u.id = x.unit_id ORDER BY x.unit_id, x.intervention_id, x.example_index");
  Statement detail = db.prepare("INSERT INTO example_details (unit_id, intervention_id, example_index, detail_json) VALUES (?, ?, ?, ?)");
  std::vector<ExampleRecord> group;
  int64_t unit = -1, intervention = -1, first = 0, count = 0;
  auto flush = [&] {
    if (group.empty()) return;
    try {
      insert_columns(db, unit, intervention, encode_example_columns(group, first, count));
    } catch (const Error& e) {
      throw Error("migrating " + db.path() + ": unit " + std::to_string(unit) + ", intervention " + std::to_string(intervention) + ": " + e.what());
    }
    group.clear();
  };
  int64_t converted = 0;
  while (rows.step()) {
    if (rows.integer(0) != unit || rows.integer(1) != intervention) flush();
    unit = rows.integer(0), intervention = rows.integer(1), first = rows.integer(5), count = rows.integer(6);
    ExampleRecord record;
    record.index = rows.integer(2);
    record.values = nlohmann::json::parse(rows.text(3)).get<Values>();
    group.push_back(std::move(record));
    detail.bind(1, unit).bind(2, intervention).bind(3, rows.integer(2)).bind(4, rows.text(4)).run();
    ++converted;
  }
  flush();
  rows.reset();
  db.execute_script("DROP TABLE examples;", "migration 0004: dropping examples");
  if (converted) log_info("store " + db.path() + ": " + std::to_string(converted) + " example rows converted to columns");
}

void migrate(Database& db) {
  const int current = schema_version(db);
  const int latest = latest_schema_version();
  if (current > latest)
    throw Error("the store " + db.path() + " has schema version " + std::to_string(current) +
                ", newer than this memsweep knows (" + std::to_string(latest) +
                "): it was written by a newer memsweep; use that version or a new store");
  for (const Migration& m : embedded_migrations()) {
    if (m.version <= current) continue;
    Transaction transaction(db);
    db.execute_script(m.sql, "migration " + std::string(m.name));
    if (m.version == 4) convert_example_rows(db);
    db.prepare("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)").bind(1, m.version).bind(2, now_utc()).run();
    transaction.commit();
    log_info("store " + db.path() + ": applied migration " + m.name);
  }
}

class SqliteStore : public Store {
 public:
  SqliteStore(const std::string& path, JournalMode mode) : db_(path) {
    configure_connection(db_, mode);
    migrate(db_);
  }

  int64_t register_study(const Study& study, const std::string& study_text, const std::vector<ModelFacts>& models,
                         const std::vector<DatasetFacts>& datasets, const UnitPlanner& plan, bool extend) override {
    Transaction transaction(db_);
    const std::string now = now_utc();
    Statement existing = db_.prepare("SELECT file_hash FROM study WHERE id = 1");
    const bool known = existing.step();
    const std::string hash = known ? existing.text(0) : "";
    existing.reset();
    const bool new_version = !known || hash != study.file_hash;
    if (known && new_version && !extend)
      throw Error("the store " + db_.path() + " belongs to another version of the study file (sha256:" + hash + ", now sha256:" +
                  study.file_hash + "); pass --extend to grow it by what the new version adds (memsweep plan shows what), "
                  "or use a new store");
    if (known) {
      db_.prepare("UPDATE study SET name = ?, file_hash = ?, file_text = ?, updated_at = ? WHERE id = 1")
          .bind(1, study.name).bind(2, study.file_hash).bind(3, study_text).bind(4, now).run();
    } else {
      db_.prepare("INSERT INTO study (id, name, file_hash, file_text, created_at, updated_at) VALUES (1, ?, ?, ?, ?, ?)")
          .bind(1, study.name).bind(2, study.file_hash).bind(3, study_text).bind(4, now).bind(5, now).run();
    }
    full_detail_ = study.store.full_detail;
    for (const ModelEntry& m : study.models) register_model(m, models);
    for (const DatasetEntry& d : study.datasets) register_dataset(d, datasets);
    std::vector<Unit> held;
    for (const UnitRow& row : units()) held.push_back(row.unit);
    if (const std::vector<std::string> removed = removed_from_study(study, held); !removed.empty()) {
      std::string list;
      for (const std::string& item : removed) list += (list.empty() ? "" : ", ") + item;
      throw Error("the store " + db_.path() + " holds units for what this version of the study no longer names (" + list +
                  "): their results would no longer be reported; keep them in the study file, or use a new store");
    }
    int64_t version = 0;
    Statement last = db_.prepare("SELECT COALESCE(MAX(version), 0) FROM study_versions");
    last.step();
    version = last.integer(0) + (new_version ? 1 : 0);
    last.reset();
    int64_t added = 0;
    for (const Unit& u : plan(held)) {
      db_.prepare("INSERT INTO units (key, model_id, dataset_id, first, count, study_version) SELECT ?, m.id, d.id, ?, ?, ? "
                  "FROM models m, datasets d WHERE m.name = ? AND d.name = ? ON CONFLICT(key) DO NOTHING")
          .bind(1, u.key()).bind(2, u.first).bind(3, u.count).bind(4, version).bind(5, u.model).bind(6, u.dataset).run();
      if (db_.changes() == 0) throw Error("store: planned unit " + u.key() + " is already recorded (a planner error)");
      ++added;
      const int64_t unit_id = db_.last_insert_id();
      for (size_t i = 0; i < u.interventions.size(); ++i)
        db_.prepare("INSERT INTO unit_interventions (unit_id, position, intervention_id) VALUES (?, ?, ?)")
            .bind(1, unit_id).bind(2, int64_t(i)).bind(3, intervention_id(u.interventions[i])).run();
    }
    if (new_version)
      db_.prepare("INSERT INTO study_versions (version, file_hash, file_text, registered_at, units_added) VALUES (?, ?, ?, ?, ?)")
          .bind(1, version).bind(2, study.file_hash).bind(3, study_text).bind(4, now).bind(5, added).run();
    else if (added)  // units planned after a crash between two commits, or after a planning rule changed
      db_.prepare("UPDATE study_versions SET units_added = units_added + ? WHERE version = ?").bind(1, added).bind(2, version).run();
    transaction.commit();
    if (added) log_info("store " + db_.path() + ": " + std::to_string(added) + " new units (study version " + std::to_string(version) + ")");
    return added;
  }

  int64_t begin_run(const Provenance& p) override {
    Statement hash = db_.prepare("SELECT file_hash FROM study WHERE id = 1");
    const std::string study_hash = hash.step() ? hash.text(0) : "";
    hash.reset();
    db_.prepare("INSERT INTO runs (study_hash, memsweep_version, git_commit, libtorch_version, host, ranks, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(1, study_hash).bind(2, p.memsweep_version).bind(3, p.git_commit).bind(4, p.libtorch_version)
        .bind(5, p.host).bind(6, p.ranks).bind(7, now_utc()).run();
    return db_.last_insert_id();
  }

  void end_run(int64_t run, const std::string& outcome) override {
    db_.prepare("UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?").bind(1, now_utc()).bind(2, outcome).bind(3, run).run();
  }

  int requeue_running() override {
    Transaction transaction(db_);
    db_.prepare("UPDATE attempts SET outcome = 'lost', finished_at = ? WHERE outcome IS NULL").bind(1, now_utc()).run();
    db_.prepare("UPDATE units SET status = 'pending' WHERE status = 'running'").run();
    const int count = db_.changes();
    transaction.commit();
    return count;
  }

  int retry_failed() override {
    Transaction transaction(db_);
    db_.prepare("UPDATE units SET status = 'pending', failures = 0, batch_size = NULL WHERE status = 'failed'").run();
    const int count = db_.changes();
    transaction.commit();
    return count;
  }

  std::vector<UnitRow> units() override {
    std::vector<UnitRow> rows;
    std::map<int64_t, size_t> position;
    Statement s = db_.prepare(
        "SELECT u.id, m.name, d.name, u.first, u.count, u.status, u.attempt, u.failures, COALESCE(u.batch_size, 0), "
        "COALESCE(u.error, '') FROM units u JOIN models m ON m.id = u.model_id JOIN datasets d ON d.id = u.dataset_id "
        "ORDER BY u.id");
    while (s.step()) {
      UnitRow row;
      row.id = s.integer(0);
      row.unit = Unit{s.text(1), s.text(2), s.integer(3), s.integer(4), {}};
      row.status = parse_status(s.text(5));
      row.attempt = int(s.integer(6));
      row.failures = int(s.integer(7));
      row.batch_size = int(s.integer(8));
      row.error = s.text(9);
      position[row.id] = rows.size();
      rows.push_back(std::move(row));
    }
    s.reset();
    Statement i = db_.prepare(
        "SELECT ui.unit_id, iv.name FROM unit_interventions ui JOIN interventions iv ON iv.id = ui.intervention_id "
        "ORDER BY ui.unit_id, ui.position");
    while (i.step()) rows[position.at(i.integer(0))].unit.interventions.push_back(i.text(1));
    return rows;
  }

  int start_attempt(int64_t run, int64_t unit, int rank, const std::string& host, const std::string& device) override {
    Transaction transaction(db_);
    const std::string now = now_utc();
    db_.prepare("UPDATE units SET status = 'running', attempt = attempt + 1, worker_rank = ?, worker_host = ?, "
                "started_at = ?, finished_at = NULL WHERE id = ? AND status = 'pending'")
        .bind(1, rank).bind(2, host).bind(3, now).bind(4, unit).run();
    if (db_.changes() != 1) throw Error("store: unit " + std::to_string(unit) + " is not pending; it cannot start");
    Statement s = db_.prepare("SELECT attempt FROM units WHERE id = ?");
    s.bind(1, unit).step();
    const int attempt = int(s.integer(0));
    s.reset();
    db_.prepare("INSERT INTO attempts (unit_id, attempt, run_id, worker_rank, worker_host, device, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(1, unit).bind(2, attempt).bind(3, run).bind(4, rank).bind(5, host).bind(6, device).bind(7, now).run();
    transaction.commit();
    return attempt;
  }

  bool record_done(int64_t unit, int attempt, const std::vector<ShardResult>& results, double seconds) override {
    Transaction transaction(db_);
    const std::vector<std::pair<std::string, int64_t>> interventions = unit_interventions(unit);  // (name, id)
    std::vector<std::string> names;
    for (const auto& [name, id] : interventions) names.push_back(name);
    const std::vector<const ShardResult*> matched = results_by_intervention(results, names, "unit " + std::to_string(unit));
    const std::string now = now_utc();
    db_.prepare("UPDATE units SET status = 'done', finished_at = ?, seconds = ?, error = NULL "
                "WHERE id = ? AND attempt = ? AND status = 'running'")
        .bind(1, now).bind(2, seconds).bind(3, unit).bind(4, attempt).run();
    if (db_.changes() != 1) return false;  // a stale attempt: the transaction rolls back
    Statement range = db_.prepare("SELECT first, count FROM units WHERE id = ?");
    range.bind(1, unit).step();
    const int64_t first = range.integer(0), count = range.integer(1);
    range.reset();
    for (size_t i = 0; i < interventions.size(); ++i) {
      const int64_t intervention = interventions[i].second;
      const ShardResult& result = *matched[i];
      db_.prepare("INSERT INTO aggregates (unit_id, intervention_id, totals_json) VALUES (?, ?, ?)")
          .bind(1, unit).bind(2, intervention).bind(3, nlohmann::json(result.totals).dump()).run();
      insert_columns(db_, unit, intervention, encode_example_columns(result.examples, first, count));
      if (!full_detail_) continue;
      Statement insert = db_.prepare("INSERT INTO example_details (unit_id, intervention_id, example_index, detail_json) VALUES (?, ?, ?, ?)");
      for (const ExampleRecord& e : result.examples)
        if (!e.detail.is_null()) insert.bind(1, unit).bind(2, intervention).bind(3, e.index).bind(4, e.detail.dump()).run();
    }
    db_.prepare("UPDATE attempts SET finished_at = ?, outcome = 'done' WHERE unit_id = ? AND attempt = ?")
        .bind(1, now).bind(2, unit).bind(3, attempt).run();
    transaction.commit();
    return true;
  }

  void record_failure(int64_t unit, int attempt, const std::string& error, bool final, int batch_size) override {
    Transaction transaction(db_);
    db_.prepare("UPDATE units SET status = ?, failures = failures + 1, error = ?, finished_at = ?, "
                "batch_size = CASE WHEN ? > 0 THEN ? ELSE batch_size END WHERE id = ? AND attempt = ? AND status = 'running'")
        .bind(1, final ? "failed" : "pending").bind(2, error).bind(3, now_utc()).bind(4, batch_size).bind(5, batch_size)
        .bind(6, unit).bind(7, attempt).run();
    if (db_.changes() != 1) return;
    close_attempt(unit, attempt, "failed", error);
    transaction.commit();
  }

  void requeue(int64_t unit, int attempt, const std::string& why) override {
    Transaction transaction(db_);
    db_.prepare("UPDATE units SET status = 'pending' WHERE id = ? AND attempt = ? AND status = 'running'")
        .bind(1, unit).bind(2, attempt).run();
    if (db_.changes() != 1) return;
    close_attempt(unit, attempt, why, "");
    transaction.commit();
  }

 private:
  // A model as the study names it; Error when the store knows it with another dtype, depth or tokenizer (results would
  // mix two models under one name). Its path may change (a checkpoint moved).
  void register_model(const ModelEntry& m, const std::vector<ModelFacts>& facts) {
    std::string tokenizer_hash;
    for (const ModelFacts& f : facts)
      if (f.name == m.name) tokenizer_hash = f.tokenizer_hash;
    Statement known = db_.prepare("SELECT dtype, num_layers, tokenizer_hash FROM models WHERE name = ?");
    known.bind(1, m.name);
    if (known.step()) {
      const std::string was = known.text(0) + ", " + std::to_string(known.integer(1)) + " layers, tokenizer sha256:" + known.text(2);
      const std::string now = m.dtype + ", " + std::to_string(m.num_layers) + " layers, tokenizer sha256:" + tokenizer_hash;
      known.reset();
      if (was != now)
        throw Error("model '" + m.name + "' changed since the store recorded it (" + was + "; now " + now +
                    "): results would mix two models under one name; give it another name, or use a new store");
    }
    known.reset();
    db_.prepare("INSERT INTO models (name, path, dtype, num_layers, tokenizer_hash) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET path = excluded.path")
        .bind(1, m.name).bind(2, m.path).bind(3, m.dtype).bind(4, m.num_layers).bind(5, tokenizer_hash).run();
  }

  // A dataset as the study names it; Error when its file, kind or options changed since the store recorded it.
  void register_dataset(const DatasetEntry& d, const std::vector<DatasetFacts>& facts) {
    const DatasetFacts* found = nullptr;
    for (const DatasetFacts& f : facts)
      if (f.name == d.name) found = &f;
    if (!found) throw Error("store: no facts given for dataset '" + d.name + "'");
    Statement known = db_.prepare("SELECT content_hash, kind, options_json FROM datasets WHERE name = ?");
    known.bind(1, d.name);
    if (known.step()) {
      const std::string hash = known.text(0), kind = known.text(1), options = known.text(2);
      known.reset();
      if (hash != found->content_hash)
        throw Error("dataset '" + d.name + "': " + d.path + " changed since the store recorded it (sha256:" + hash + ", now sha256:" +
                    found->content_hash + "); results would mix two datasets: use a new store");
      if (kind != d.kind || nlohmann::json::parse(options) != d.options)
        throw Error("dataset '" + d.name + "' changed since the store recorded it (kind " + kind + ", options " + options + "; now " +
                    d.kind + ", " + d.options.dump() + "): results would mix two datasets; give it another name, or use a new store");
    }
    known.reset();
    // The path and role may change: where the file is, and what the report makes of it, not what was computed.
    db_.prepare("INSERT INTO datasets (name, kind, path, options_json, content_hash, num_examples, role) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET path = excluded.path, role = excluded.role")
        .bind(1, d.name).bind(2, d.kind).bind(3, d.path).bind(4, d.options.dump()).bind(5, found->content_hash)
        .bind(6, found->num_examples).bind(7, d.role).run();
  }

  void close_attempt(int64_t unit, int attempt, const std::string& outcome, const std::string& error) {
    db_.prepare("UPDATE attempts SET finished_at = ?, outcome = ?, error = ? WHERE unit_id = ? AND attempt = ?")
        .bind(1, now_utc()).bind(2, outcome).bind(3, error).bind(4, unit).bind(5, attempt).run();
  }

  int64_t intervention_id(const std::string& name) {
    db_.prepare("INSERT INTO interventions (name) VALUES (?) ON CONFLICT(name) DO NOTHING").bind(1, name).run();
    Statement s = db_.prepare("SELECT id FROM interventions WHERE name = ?");
    s.bind(1, name).step();
    return s.integer(0);
  }

  // The unit's interventions in its order: (name, id).
  std::vector<std::pair<std::string, int64_t>> unit_interventions(int64_t unit) {
    std::vector<std::pair<std::string, int64_t>> interventions;
    Statement s = db_.prepare("SELECT iv.name, ui.intervention_id FROM unit_interventions ui "
                              "JOIN interventions iv ON iv.id = ui.intervention_id WHERE ui.unit_id = ? ORDER BY ui.position");
    s.bind(1, unit);
    while (s.step()) interventions.push_back({s.text(0), s.integer(1)});
    return interventions;
  }

  Database db_;
  bool full_detail_ = false;  // the study's [store] detail = "full"
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& path, JournalMode mode) {
  if (mode == JournalMode::wal && path != ":memory:") {
    const std::string folder = std::filesystem::absolute(path).parent_path().string();
    const std::string network = network_filesystem_name(folder);
    if (!network.empty()) {
      log_warning("store " + path + " is on " + network + ", where SQLite's WAL mode does not work (its shared-memory "
                  "index needs one host's mmap); using the rollback journal (journal_mode = \"delete\") instead");
      mode = JournalMode::rollback;
    }
  }
  return std::make_unique<SqliteStore>(path, mode);
}

}  // namespace memsweep

namespace memsweep {
int latest_schema_version() { return embedded_migrations().empty() ? 0 : embedded_migrations().back().version; }
}  // namespace memsweep
