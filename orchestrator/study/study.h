#pragma once
// A study: models × datasets × interventions with run and store settings, read from a TOML file
// (documented key by key in schemas/study.md), and its expansion into work units. libtorch-free: rank 0's
// planning, the store and the tests link it without the model code.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace memsweep {

// Where a value came from, for error messages: "study.toml:12:9".
struct SourcePlace {
  std::string file;
  int line = 0, column = 0;
  std::string str() const;
};

struct ModelEntry {
  std::string name, path, dtype = "float32";
  std::string tokenizer;  // its tokenizer (model_tokenizer_path: the 'tokenizer' key, else the model folder's files); "": none
  int num_layers = 0;     // from the checkpoint's config.json
  SourcePlace place;
};

struct DatasetEntry {
  std::string name, kind, path;
  // What the report makes of it: "memorized" (the set whose memorization interventions remove), "control" (a
  // memorization set the model does not reproduce), "benchmark" or "divergence". Defaulted from the kind.
  std::string role;
  nlohmann::json options = nlohmann::json::object();
  std::string tokenizer;            // a path, "sha256:HEX", or empty (no check)
  std::vector<std::string> models;  // empty: every model
  SourcePlace place, tokenizer_place;
};

// A dataset kind's role unless the study says otherwise: "memorized", "divergence" or "benchmark".
std::string default_role(const std::string& kind);

// Which interventions every model gets; blocks depend on the model's depth, so expansion is per model.
struct InterventionPlan {
  bool baseline = true;
  std::vector<std::string> kinds = {"short_circuit"};  // applied to single_blocks, blocks and last
  bool single_blocks = false;
  std::vector<std::string> blocks;  // block lists, each one intervention: "3,7", "18-23"
  std::vector<int> last;            // the last k blocks, each k one intervention
  std::vector<std::string> names;   // canonical intervention names taken as written
  SourcePlace place;
};

struct RunSettings {
  int batch_size = 8;
  int64_t token_budget = 0;         // padded tokens per forward pass (at most); 0: batch_size alone
  int64_t unit_size = 256;          // examples per unit
  int interventions_per_unit = 0;   // 0: all of a model's interventions in one unit
  int attempts = 3;                 // tries of a unit before it is recorded failed
  double unit_timeout_s = 3600;     // a unit running longer is requeued under a new attempt
  double drain_grace_s = 300;       // after SIGUSR1: how long in-flight units may still finish
  double cancel_wait_s = 20;        // after SIGTERM or the grace: how long rank 0 waits for cancelled units' answers
  std::string device = "auto";      // "auto" (a GPU per worker when CUDA is there, else cpu) or "cpu"
  int devices_per_worker = 1;       // devices each worker spans; its models split their layers over them
};

enum class JournalMode { rollback, wal };

struct StoreSettings {
  std::string path;
  JournalMode journal_mode = JournalMode::rollback;
  bool full_detail = false;  // detail = "full": each example's detail JSON too (generated tokens, per-position gaps)
};

struct Study {
  std::string file, file_hash;  // the TOML file and the SHA-256 of its bytes
  std::string name;
  std::vector<ModelEntry> models;
  std::vector<DatasetEntry> datasets;
  InterventionPlan interventions;
  RunSettings run;
  StoreSettings store;

  const ModelEntry& model(const std::string& name) const;
  const DatasetEntry& dataset(const std::string& name) const;
  // The canonical intervention names a model gets, in a fixed order without duplicates.
  std::vector<std::string> interventions_for(const ModelEntry& model) const;
  // Whether the dataset is evaluated on the model (its `models` list, or every model).
  bool pairs(const DatasetEntry& dataset, const ModelEntry& model) const;
};

// Parses and checks the file: syntax, unknown keys, types, missing paths, models' depths, intervention
// blocks. Errors name the file, line and column. Tokenizers are checked separately (check_tokenizers).
Study load_study(const std::string& path);
Study parse_study(const std::string& text, const std::string& origin, const std::string& base_dir);

// Every dataset's declared tokenizer against each of its models' tokenizers (content hashes); Error with the
// dataset's tokenizer place on a mismatch or an unreadable tokenizer.
void check_tokenizers(const Study& study);

// A work unit: one shard of one dataset on one model under a group of interventions. Its key depends only
// on these, never on the number of ranks or the batch size, so a rerun finds its units again.
struct Unit {
  std::string model, dataset;
  int64_t first = 0, count = 0;
  std::vector<std::string> interventions;
  std::string key() const;
};

// How many examples a dataset has (as the model's task would read it).
using ExampleCounter = std::function<int64_t(const DatasetEntry&, const ModelEntry&)>;
// The units a study adds to those a store already holds (`held`; none for a new store). Invariant: every (model,
// dataset, intervention, example) the study names is in exactly one unit, held or new — so a study grown with
// --extend computes only what is new and never counts an example twice. Per model and dataset, the examples no held
// unit covers for an intervention form ranges; interventions with the same ranges are planned together: each range
// cut into shards of unit_size from its start, a shard's interventions into groups of interventions_per_unit (study
// order). On an empty store that is the whole grid in study order: model, dataset, shard, intervention group.
// unit_size and interventions_per_unit therefore shape only what is planned after they change.
std::vector<Unit> expand_units(const Study& study, const ExampleCounter& count_examples, const std::vector<Unit>& held = {});

// The units to add to a store that holds `held` units: expand_units over a study and its example counts.
using UnitPlanner = std::function<std::vector<Unit>(const std::vector<Unit>& held)>;
UnitPlanner unit_planner(const Study& study, const ExampleCounter& count_examples);

// What held units cover that the study no longer names, one line each ("model 'x'", "dataset 'd' on model 'x'",
// "intervention 'i' of model 'x'"): results an --extend would orphan (it is refused instead).
std::vector<std::string> removed_from_study(const Study& study, const std::vector<Unit>& held);

// How many (model, dataset, intervention, example) cells more than one held unit covers (stores grown by memsweep
// before this rule counted them twice).
int64_t doubly_covered(const std::vector<Unit>& held);

// Lowercase hex SHA-256 of bytes, and of a file's bytes (Error naming an unreadable file).
std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);

}  // namespace memsweep
