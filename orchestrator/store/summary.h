#pragma once
// Read-only views of a store for `memsweep status`, `memsweep plan` and `memsweep report`: progress per model and
// dataset, failures, rate and ETA, metrics per intervention, provenance, per-example values. Each opens the file
// read-only, so it is safe while a study runs.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "orchestrator/study/study.h"
#include "worker/tasks/results.h"
#include "worker/tasks/statistics.h"

namespace memsweep {

struct GroupProgress {
  std::string model, dataset;
  int64_t total = 0, done = 0, failed = 0, running = 0, pending = 0;
};

struct FailureRow {
  std::string unit_key, error, host;
  int attempt = 0, rank = 0;
  bool final = false;  // the unit is recorded failed (no attempts left)
};

struct HeldUnit {
  Unit unit;
  std::string status;  // pending | running | done | failed
};

struct StoreSummary {
  std::string study_name, study_hash;
  std::map<std::string, std::string> dataset_hashes;  // dataset name -> SHA-256 of its file when it was recorded
  int schema_version = 0;
  std::vector<GroupProgress> groups;
  std::vector<FailureRow> failures;     // every failed attempt, newest first
  std::vector<HeldUnit> units;          // every unit, in the order it was planned
  int64_t runs = 0;
  std::string last_run_started, last_run_outcome;  // outcome empty while it runs (or after a crash)
  int64_t done_in_last_run = 0;
  double last_run_seconds = 0;   // from its start to its last finished unit
  double units_per_second() const { return last_run_seconds > 0 ? double(done_in_last_run) / last_run_seconds : 0; }
};

// Error when the file is absent or is not a memsweep store.
StoreSummary read_store_summary(const std::string& path);

// A warning when some (model, dataset, intervention, example) is covered by two units (a store grown by the --extend
// of a memsweep before schema 2, which recomputed what it held), else "".
std::string double_coverage_warning(const StoreSummary& summary);

// Summed ShardResult totals of the done units per model, dataset and intervention (finalize_metrics turns them
// into the dataset's metrics). `units_done` of `units` tells whether the numbers cover the whole dataset yet.
// Rows come ordered by model, dataset (store order) and intervention (study order).
struct InterventionTotals {
  std::string model, dataset, kind, intervention;
  int64_t units_done = 0, units = 0;
  Values totals;
  Values metrics;  // finalize_metrics(kind, totals) of the done units: the numbers status and report both print
  nlohmann::json dataset_options;  // the dataset's options table as the study gave it
  int model_layers = 0;
  std::string role;  // the dataset's (DatasetEntry::role); from its kind in stores before schema 3
};
std::vector<InterventionTotals> read_intervention_totals(const std::string& path);

// Every `memsweep run` on the store, oldest first, and the devices its attempts ran on.
struct RunRecord {
  int64_t id = 0;
  std::string memsweep_version, git_commit, libtorch_version, host, started_at, ended_at, outcome;
  int ranks = 0;
  std::vector<std::string> devices;
};
std::vector<RunRecord> read_runs(const std::string& path);

// Per-example metrics and facts of the done units (example_values, decoded), ordered by model, dataset, intervention
// and example index.
struct ExampleValues {
  std::string model, dataset, intervention;
  int64_t index = 0;
  Values values, facts;
};
// Error for a store before schema 4 (its JSON rows are converted when `memsweep run` opens it).
void for_each_example(const std::string& path, const std::function<void(const ExampleValues&)>& visit);

// Standard errors and paired differences against the baseline (worker/tasks/statistics.h) per (model, dataset,
// intervention), from the done units' per-example values joined by example index: the same numbers whatever the unit
// size, grouping, number of ranks or extensions. Empty for a store before schema 4 (`memsweep run` converts it).
// LAMBADA's perplexity bootstrap runs on `bootstrap_threads` threads (0: every core).
using StoreStatistics = std::map<std::tuple<std::string, std::string, std::string>, InterventionStatistics>;
StoreStatistics read_statistics(const std::string& path, int bootstrap_threads = 0);

// What the store's views (schemas/store.md) say of each memorization set's rows, per model and dataset: how many rows
// the baseline reproduces, how many survive every intervention, and per intervention how many it flips 1 -> 0
// (removed) and 0 -> 1 (added). Empty for a store before schema 4.
struct RowFlips {
  std::string model, dataset;
  int64_t memorized = 0, surviving = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> flips;  // intervention -> (removed, added)
};
std::vector<RowFlips> read_row_flips(const std::string& path);

}  // namespace memsweep
