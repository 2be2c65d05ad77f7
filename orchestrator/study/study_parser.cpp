// Reading a study file: every key is known, typed and placed; errors say "FILE:LINE:COLUMN: what".
#include <toml++/toml.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "orchestrator/study/study.h"
#include "worker/base/error.h"
#include "worker/base/intervention.h"
#include "worker/base/json_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace memsweep {

std::string SourcePlace::str() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

namespace {

// Whether a path exists; false, not an exception, for a name the file system refuses (too long, bad bytes): the
// caller then says it does not exist (found by fuzz_study).
bool path_exists(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

// One TOML table being read: each key taken is remembered so the leftovers can be reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string file, std::string where)
      : table_(table), file_(std::move(file)), where_(std::move(where)) {}

  SourcePlace place_of(const toml::node& node) const {
    return {file_, int(node.source().begin.line), int(node.source().begin.column)};
  }
  SourcePlace place() const { return place_of(table_); }
  [[noreturn]] void fail(const toml::node& node, const std::string& message) const {
    throw Error(place_of(node).str() + ": " + message);
  }
  const toml::node* get(const std::string& key) {
    taken_.insert(key);
    return table_.get(key);
  }
  std::string name(const std::string& key) const { return where_.empty() ? key : where_ + "." + key; }

  template <typename T>
  T value(const std::string& key, const T& fallback, const char* type_name) {
    const toml::node* node = get(key);
    if (!node) return fallback;
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = node->value<double>()) return *v;  // integers are accepted where a number is expected
    } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, int>) {
      if (node->is_integer()) return T(node->as_integer()->get());
    } else if (auto v = node->value_exact<T>()) {
      return *v;
    }
    fail(*node, "'" + name(key) + "' must be " + type_name + ", found " + type_of(*node));
  }
  std::string text(const std::string& key, const std::string& fallback = "") { return value<std::string>(key, fallback, "a string"); }
  std::string required_text(const std::string& key) {
    if (!table_.contains(key)) throw Error(place().str() + ": '" + name(key) + "' is required");
    return text(key);
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t minimum,
                  int64_t maximum = std::numeric_limits<int64_t>::max()) {
    int64_t v = value<int64_t>(key, fallback, "an integer");
    if (v < minimum) fail(*table_.get(key), "'" + name(key) + "' must be at least " + std::to_string(minimum) + ", found " + std::to_string(v));
    if (v > maximum) fail(*table_.get(key), "'" + name(key) + "' must be at most " + std::to_string(maximum) + ", found " + std::to_string(v));
    return v;
  }
  // An integer kept in an int: larger values are errors, never wrapped (2^32 would become 0).
  int small_integer(const std::string& key, int fallback, int minimum) {
    return int(integer(key, fallback, minimum, std::numeric_limits<int>::max()));
  }
  double number(const std::string& key, double fallback) {
    double v = value<double>(key, fallback, "a number");
    if (!(v > 0) || !std::isfinite(v)) fail(*table_.get(key), "'" + name(key) + "' must be positive and finite");
    return v;
  }
  bool boolean(const std::string& key, bool fallback) { return value<bool>(key, fallback, "true or false"); }
  template <typename T>
  std::vector<T> list(const std::string& key, const char* type_name) {
    std::vector<T> items;
    const toml::node* node = get(key);
    if (!node) return items;
    const toml::array* array = node->as_array();
    if (!array) fail(*node, "'" + name(key) + "' must be an array of " + type_name + ", found " + type_of(*node));
    for (const toml::node& item : *array) {
      std::optional<T> v;
      if constexpr (std::is_same_v<T, int>) {
        if (item.is_integer()) {
          const int64_t wide = item.as_integer()->get();
          if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max())
            fail(item, "'" + name(key) + "': " + std::to_string(wide) + " is out of range");
          v = int(wide);
        }
      }
      else v = item.value_exact<T>();
      if (!v) fail(item, "'" + name(key) + "' must be an array of " + type_name + ", found an element of type " + type_of(item));
      items.push_back(*v);
    }
    return items;
  }
  // A path relative to the study file's folder; Error at the value when nothing is there.
  std::string existing_path(const std::string& key, const std::string& base_dir) {
    const std::string raw = required_text(key);
    fs::path path = fs::path(raw).is_absolute() ? fs::path(raw) : fs::path(base_dir) / raw;
    if (!path_exists(path)) fail(*table_.get(key), "'" + name(key) + "': " + path.string() + " does not exist");
    return path.lexically_normal().string();
  }
  // Unknown keys are errors (a misspelled key must not silently fall back to a default).
  void finish(const std::set<std::string>& also_known = {}) const {
    for (const auto& [key, node] : table_)
      if (!taken_.count(std::string(key.str())) && !also_known.count(std::string(key.str())))
        throw Error(SourcePlace{file_, int(key.source().begin.line), int(key.source().begin.column)}.str() +
                    ": unknown key '" + name(std::string(key.str())) + "'");
  }
  static std::string type_of(const toml::node& node) {
    switch (node.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date or time";
    }
  }
  const toml::table& table() const { return table_; }

 private:
  const toml::table& table_;
  std::string file_, where_;
  std::set<std::string> taken_;
};

nlohmann::json to_json(const toml::node& node) {
  if (auto* t = node.as_table()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : *t) out[std::string(k.str())] = to_json(v);
    return out;
  }
  if (auto* a = node.as_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : *a) out.push_back(to_json(v));
    return out;
  }
  if (auto v = node.value_exact<std::string>()) return *v;
  if (auto v = node.value_exact<int64_t>()) return *v;
  if (auto v = node.value_exact<double>()) return *v;
  if (auto v = node.value_exact<bool>()) return *v;
  throw Error("dates and times are not accepted in dataset options");
}

// The tables of an array of tables ([[models]]); Error at the key when it is something else.
std::vector<const toml::table*> tables_of(TableReader& root, const std::string& key) {
  std::vector<const toml::table*> tables;
  const toml::node* node = root.get(key);
  if (!node) return tables;
  const toml::array* array = node->as_array();
  if (!array) root.fail(*node, "'" + key + "' must be an array of tables ([[" + key + "]])");
  for (const toml::node& item : *array) {
    if (!item.is_table()) root.fail(item, "'" + key + "' must be an array of tables ([[" + key + "]])");
    tables.push_back(item.as_table());
  }
  return tables;
}

int read_num_layers(const std::string& model_dir, const SourcePlace& place) {
  const fs::path config = fs::path(model_dir) / "config.json";
  if (!path_exists(config)) throw Error(place.str() + ": model '" + model_dir + "' has no config.json");
  const nlohmann::json json = read_json_file(config.string());
  for (const char* key : {"num_hidden_layers", "num_layers", "n_layer"})
    if (json.contains(key) && json[key].is_number_integer()) return json[key].get<int>();
  throw Error(place.str() + ": " + config.string() + " gives no number of layers (num_hidden_layers or num_layers)");
}

void check_name(TableReader& reader, const std::string& key, const std::string& name, std::set<std::string>& seen) {
  if (name.empty() || name.find('|') != std::string::npos)
    reader.fail(*reader.table().get(key), "'" + reader.name(key) + "' must be a non-empty name without '|'");
  if (!seen.insert(name).second) reader.fail(*reader.table().get(key), "'" + name + "' is declared twice");
}

}  // namespace

Study parse_study(const std::string& text, const std::string& origin, const std::string& base_dir) {
  toml::table document;
  try {
    document = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    throw Error(SourcePlace{origin, int(e.source().begin.line), int(e.source().begin.column)}.str() + ": " +
                std::string(e.description()));
  }
  Study study;
  study.file = origin;
  study.file_hash = sha256_hex(text);
  TableReader root(document, origin, "");
  const std::set<std::string> tables = {"study", "run", "store", "interventions"};
  for (const std::string& key : tables)
    if (const toml::node* node = document.get(key); node && !node->is_table())
      root.fail(*node, "'" + key + "' must be a table ([" + key + "])");

  static const toml::table kEmpty;
  auto table = [&](const std::string& key) -> const toml::table& {
    const toml::node* node = root.get(key);
    return node ? *node->as_table() : kEmpty;
  };

  TableReader header(table("study"), origin, "study");
  study.name = header.text("name", fs::path(origin).stem().string());
  header.finish();

  TableReader run(table("run"), origin, "run");
  study.run.batch_size = run.small_integer("batch_size", 8, 1);
  study.run.token_budget = run.integer("token_budget", 0, 0);
  study.run.unit_size = run.integer("unit_size", 256, 1);
  study.run.interventions_per_unit = run.small_integer("interventions_per_unit", 0, 0);
  study.run.attempts = run.small_integer("attempts", 3, 1);
  study.run.unit_timeout_s = run.number("unit_timeout_s", 3600);
  study.run.drain_grace_s = run.number("drain_grace_s", 300);
  study.run.cancel_wait_s = run.number("cancel_wait_s", 20);
  study.run.device = run.text("device", "auto");
  if (study.run.device != "auto" && study.run.device != "cpu")
    run.fail(*run.table().get("device"), "'run.device' must be \"auto\" or \"cpu\", found \"" + study.run.device + "\"");
  study.run.devices_per_worker = run.small_integer("devices_per_worker", 1, 1);
  run.finish();

  TableReader store(table("store"), origin, "store");
  const std::string store_path = store.text("path", study.name + ".sqlite");
  study.store.path = fs::path(store_path).is_absolute() ? store_path : (fs::path(base_dir) / store_path).lexically_normal().string();
  const std::string journal = store.text("journal_mode", "delete");
  if (journal == "wal") study.store.journal_mode = JournalMode::wal;
  else if (journal != "delete")
    store.fail(*store.table().get("journal_mode"), "'store.journal_mode' must be \"delete\" or \"wal\", found \"" + journal + "\"");
  const std::string detail = store.text("detail", "default");
  if (detail == "full") study.store.full_detail = true;
  else if (detail != "default")
    store.fail(*store.table().get("detail"), "'store.detail' must be \"default\" or \"full\", found \"" + detail + "\"");
  store.finish();

  TableReader plan(table("interventions"), origin, "interventions");
  InterventionPlan& interventions = study.interventions;
  interventions.place = plan.place();
  interventions.baseline = plan.boolean("baseline", true);
  if (plan.table().contains("kinds")) interventions.kinds = plan.list<std::string>("kinds", "strings");
  for (const std::string& kind : interventions.kinds)
    if (kind != "short_circuit" && kind != "zero_attention")
      plan.fail(*plan.table().get("kinds"), "'interventions.kinds': unknown kind '" + kind + "' (short_circuit or zero_attention)");
  interventions.single_blocks = plan.boolean("single_blocks", false);
  interventions.blocks = plan.list<std::string>("blocks", "strings");
  interventions.last = plan.list<int>("last", "integers");
  interventions.names = plan.list<std::string>("names", "strings");
  plan.finish();

  std::set<std::string> names;
  for (const toml::table* t : tables_of(root, "models")) {
    TableReader reader(*t, origin, "models");
    ModelEntry model;
    model.place = reader.place();
    model.name = reader.required_text("name");
    check_name(reader, "name", model.name, names);
    model.path = reader.existing_path("path", base_dir);
    model.dtype = reader.text("dtype", "float32");
    if (model.dtype != "float32" && model.dtype != "float16" && model.dtype != "bfloat16")
      reader.fail(*t->get("dtype"), "'models.dtype' must be float32, float16 or bfloat16, found \"" + model.dtype + "\"");
    model.tokenizer = model_tokenizer_path(model.path, t->contains("tokenizer") ? reader.existing_path("tokenizer", base_dir) : "");
    model.num_layers = read_num_layers(model.path, model.place);
    reader.finish();
    study.models.push_back(std::move(model));
  }
  if (study.models.empty()) throw Error(origin + ": the study declares no [[models]]");

  names.clear();
  for (const toml::table* t : tables_of(root, "datasets")) {
    TableReader reader(*t, origin, "datasets");
    DatasetEntry dataset;
    dataset.place = reader.place();
    dataset.name = reader.required_text("name");
    check_name(reader, "name", dataset.name, names);
    dataset.kind = reader.required_text("kind");
    dataset.path = reader.existing_path("path", base_dir);
    // The role: memorization sets are "memorized" (or "control"), divergence sets "divergence", the rest benchmarks.
    const std::string kind_role = default_role(dataset.kind);
    dataset.role = reader.text("role", kind_role);
    const bool memorization_role = dataset.role == "memorized" || dataset.role == "control";
    if (dataset.role != kind_role && !(memorization_role && dataset.kind == "memorization"))
      reader.fail(*t->get("role"), "'datasets.role' of a " + dataset.kind + " dataset must be " +
                                       (dataset.kind == "memorization" ? std::string("\"memorized\" or \"control\"") : "\"" + kind_role + "\"") +
                                       ", found \"" + dataset.role + "\"");
    if (const toml::node* options = reader.get("options")) {
      if (!options->is_table()) reader.fail(*options, "'datasets.options' must be a table");
      dataset.options = to_json(*options);
    }
    if (const toml::node* tokenizer = t->get("tokenizer")) {
      dataset.tokenizer_place = reader.place_of(*tokenizer);
      const std::string declared = reader.text("tokenizer");
      dataset.tokenizer = declared.rfind("sha256:", 0) == 0 ? declared : reader.existing_path("tokenizer", base_dir);
    }
    dataset.models = reader.list<std::string>("models", "strings");
    for (const std::string& m : dataset.models) {
      bool known = false;
      for (const ModelEntry& model : study.models) known = known || model.name == m;
      if (!known) reader.fail(*t->get("models"), "'datasets.models': no model is named '" + m + "'");
    }
    reader.finish();
    study.datasets.push_back(std::move(dataset));
  }
  if (study.datasets.empty()) throw Error(origin + ": the study declares no [[datasets]]");
  root.finish();

  // Each model's interventions must exist for its depth: a block past the last layer is caught here.
  for (const ModelEntry& model : study.models) {
    try {
      if (study.interventions_for(model).empty()) throw Error("no intervention is selected");
    } catch (const Error& e) {
      throw Error(interventions.place.str() + ": model '" + model.name + "' (" + std::to_string(model.num_layers) +
                  " layers): " + e.what());
    }
  }
  return study;
}

Study load_study(const std::string& path) {
  const std::string text = read_file(path);
  return parse_study(text, path, fs::path(path).parent_path().string());
}

}  // namespace memsweep
