// Opening a dataset for a model, libtorch-free: the task context, each kind's rows or documents, example counts and
// the largest batch a task will run.
#include "worker/tasks/dataset.h"

#include <algorithm>
#include <filesystem>

#include "worker/base/error.h"
#include "worker/base/json_file.h"

namespace memsweep {

int64_t harness_max_length(const std::string& model_dir) {
  // lm_eval.models.utils.resolve_max_length: the config's n_positions, max_position_embeddings or n_ctx, then the
  // tokenizer's model_max_length unless it is the "unset" huge value, then 2048.
  const ConfigReader config(model_dir);
  for (const char* key : {"n_positions", "max_position_embeddings", "n_ctx"})
    if (config.has(key)) return config.require_int(key);
  const std::string tokenizer_config = model_dir + "/tokenizer_config.json";
  if (std::filesystem::exists(tokenizer_config)) {
    const nlohmann::json json = read_json_file(tokenizer_config);
    const auto length = json.find("model_max_length");
    if (length != json.end() && length->is_number() && length->get<double>() < 1e29) return int64_t(length->get<double>());
  }
  return 2048;
}

TaskContext read_task_context(const std::string& model_dir, const std::string& tokenizer, const std::string& model_name) {
  TaskContext context;
  context.model = model_name;
  const ModelSize size = read_model_size(model_dir);
  context.vocab_size = size.vocab;
  context.eos_token_ids = size.eos_token_ids;
  context.max_length = harness_max_length(model_dir);
  const std::string path = model_tokenizer_path(model_dir, tokenizer);
  if (!path.empty()) context.tokenizer = Tokenizer::load(path);
  return context;
}

std::string dataset_on_model(const DatasetSpec& spec, const TaskContext& context) {
  return "dataset '" + spec.name + "' (" + spec.kind + ") on model '" + context.model + "'";
}

namespace {

// Runs `read`, prefixing any Error with dataset_on_model().
template <typename Read>
auto naming(const DatasetSpec& spec, const TaskContext& context, Read read) -> decltype(read()) {
  try {
    return read();
  } catch (const Error& e) {
    throw Error(dataset_on_model(spec, context) + ": " + e.what());
  }
}

const nlohmann::json& options_object(const nlohmann::json& options) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  if (options.is_null()) return kEmpty;
  if (!options.is_object()) throw Error("options must be a table, found " + options.dump());
  return options;
}

int64_t integer_option(const std::string& key, const nlohmann::json& value, int64_t minimum) {
  if (!value.is_number_integer() || value.get<int64_t>() < minimum)
    throw Error("option '" + key + "' must be an integer >= " + std::to_string(minimum) + ", found " + value.dump());
  return value.get<int64_t>();
}

bool boolean_option(const std::string& key, const nlohmann::json& value) {
  if (!value.is_boolean()) throw Error("option '" + key + "' must be true or false, found " + value.dump());
  return value.get<bool>();
}

std::string row_place(const std::string& path, int64_t source) {
  const bool npy = path.size() > 4 && path.substr(path.size() - 4) == ".npy";
  return path + (npy ? ", row " : ", line ") + std::to_string(source);
}

// A row the model cannot take whole (its positions end at max_length: learned position embeddings have no more), or
// "" when it fits.
std::string too_long(const std::string& path, int64_t source, int64_t length, const TaskContext& context) {
  if (length <= context.max_length) return "";
  return row_place(path, source) + ": " + std::to_string(length) + " tokens, more than the model's " + std::to_string(context.max_length) +
         " positions";
}

}  // namespace

MemorizationOptions MemorizationOptions::read(const nlohmann::json& options) {
  MemorizationOptions o;
  for (const auto& item : options_object(options).items()) {
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    if (key == "prefix") o.prefix = integer_option(key, value, 1);
    else if (key == "suffix") o.suffix = integer_option(key, value, 1);
    else if (key == "limit") o.limit = integer_option(key, value, 0);
    else if (key == "mask_eos") o.mask_eos = boolean_option(key, value);
    else if (key == "skip_bad") o.skip_bad = boolean_option(key, value);
    else throw Error("unknown option '" + key + "' (prefix, suffix, limit, mask_eos, skip_bad)");
  }
  return o;
}

MemorizationRows read_memorization_rows(const DatasetSpec& spec, const TaskContext& context) {
  return naming(spec, context, [&] {
    MemorizationRows out;
    out.options = MemorizationOptions::read(spec.options);
    const MemorizationOptions& o = out.options;
    TokenRows data = read_token_rows_file(spec.path, context.vocab_size, text_encoder(context.tokenizer ? &*context.tokenizer : nullptr),
                                          o.skip_bad, o.limit);
    const int64_t needed = o.prefix + (o.suffix > 0 ? o.suffix : 1);
    for (size_t i = 0; i < data.rows.size(); ++i) {
      const int64_t length = int64_t(data.rows[i].size());
      std::string problem = length < needed ? row_place(spec.path, data.source[i]) + ": " + std::to_string(length) +
                                                  " tokens, fewer than prefix + suffix = " + std::to_string(needed)
                                            : too_long(spec.path, data.source[i], o.suffix > 0 ? o.prefix + o.suffix : length, context);
      if (!problem.empty()) {
        if (!o.skip_bad) throw Error(problem);
        ++out.skipped;
        continue;
      }
      out.rows.push_back(std::move(data.rows[i]));
      out.source.push_back(data.source[i]);
    }
    out.skipped += data.skipped;
    return out;
  });
}

TokenRows read_divergence_rows(const DatasetSpec& spec, const TaskContext& context) {
  return naming(spec, context, [&] {
    int64_t limit = -1;
    bool skip_bad = false;
    for (const auto& item : options_object(spec.options).items()) {
      if (item.key() == "limit") limit = integer_option(item.key(), item.value(), 0);
      else if (item.key() == "skip_bad") skip_bad = boolean_option(item.key(), item.value());
      else throw Error("unknown option '" + item.key() + "' (limit, skip_bad)");
    }
    TokenRows data = read_token_rows_file(spec.path, context.vocab_size, text_encoder(context.tokenizer ? &*context.tokenizer : nullptr),
                                          skip_bad, limit);
    TokenRows kept;
    kept.skipped = data.skipped;
    for (size_t i = 0; i < data.rows.size(); ++i) {
      const std::string problem = data.rows[i].empty() ? row_place(spec.path, data.source[i]) + ": the row is empty"
                                                       : too_long(spec.path, data.source[i], int64_t(data.rows[i].size()), context);
      if (!problem.empty()) {
        if (!skip_bad) throw Error(problem);
        ++kept.skipped;
        continue;
      }
      kept.rows.push_back(std::move(data.rows[i]));
      kept.source.push_back(data.source[i]);
    }
    return kept;
  });
}

BenchmarkOptions read_benchmark_options(const DatasetSpec& spec, const BenchmarkKind& kind) {
  BenchmarkOptions o;
  o.tag = kind.default_tag;
  const bool generic = spec.kind == "multiple_choice", rolling = kind.type == RequestType::rolling;
  std::string known = "limit, tag, token_budget, share_contexts";
  if (generic) known += ", context, choices, label, label_keys, delimiter";
  if (rolling) known += ", text_field";
  bool has_context = false, has_choices = false, has_label = false;
  for (const auto& item : options_object(spec.options).items()) {
    const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture those in lambdas
    const nlohmann::json& value = item.value();
    auto text = [&] {
      if (!value.is_string()) throw Error("option '" + key + "' must be a string, found " + value.dump());
      return value.template get<std::string>();
    };
    if (key == "limit") o.limit = integer_option(key, value, 0);
    else if (key == "token_budget") o.token_budget = integer_option(key, value, 1);
    else if (key == "tag") {
      o.tag = text();
      if (o.tag != "language" && o.tag != "reasoning") throw Error("option 'tag' must be \"language\" or \"reasoning\", found \"" + o.tag + "\"");
    } else if (key == "share_contexts") o.share_contexts = boolean_option(key, value);
    else if (generic && key == "context") o.settings.context = text(), has_context = true;
    else if (generic && key == "choices") {
      has_choices = true;
      if (value.is_string()) o.settings.choices_field = value.template get<std::string>();
      else if (value.is_array() && !value.empty() && std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_string(); }))
        o.settings.choice_templates = value.template get<std::vector<std::string>>();
      else throw Error("option 'choices' must be a field name or a list of templates, found " + value.dump());
    } else if (generic && key == "label") o.settings.label_field = text(), has_label = true;
    else if (generic && key == "label_keys") o.settings.label_keys_field = text();
    else if (generic && key == "delimiter") o.settings.delimiter = text();
    else if (rolling && key == "text_field") o.settings.text_field = text();
    else throw Error("unknown option '" + key + "' (" + known + ")");
  }
  if (generic && !(has_context && has_choices && has_label))
    throw Error("a multiple_choice dataset needs the options context, choices and label");
  return o;
}

namespace {
const BenchmarkKind& benchmark_kind(const DatasetSpec& spec) {
  const BenchmarkKind* kind = find_benchmark_kind(spec.kind);
  if (!kind) throw Error("'" + spec.kind + "' is not a benchmark kind");
  return *kind;
}
}  // namespace

std::string benchmark_tag(const DatasetSpec& spec) {
  try {
    return read_benchmark_options(spec, benchmark_kind(spec)).tag;
  } catch (const Error& e) {
    throw Error("dataset '" + spec.name + "' (" + spec.kind + "): " + e.what());
  }
}

BenchmarkSet read_benchmark_set(const DatasetSpec& spec, const TaskContext& context, bool tokenize) {
  return naming(spec, context, [&] {
    BenchmarkSet set;
    set.kind = &benchmark_kind(spec);
    set.options = read_benchmark_options(spec, *set.kind);
    if (!context.tokenizer)
      throw Error("a benchmark needs the model's tokenizer, and its folder has neither tokenizer.json nor vocab.json + merges.txt "
                  "(give one: the study's 'tokenizer' key of the model, or eval's --tokenizer)");
    set.documents = read_benchmark_documents(spec.path, *set.kind, set.options.settings, set.options.limit);
    if (!tokenize) return set;
    const Tokenizer& tokenizer = *context.tokenizer;
    const int64_t prefix = harness_prefix_token(tokenizer, context.eos_token_ids);
    for (const auto& document : set.documents) {
      set.first_request.push_back(set.requests.size());
      try {
        if (set.kind->type == RequestType::rolling) {
          for (auto& window : rolling_windows(harness_encode(tokenizer, document.continuations.front(), prefix), prefix, context.max_length))
            set.requests.push_back(std::move(window));
        } else {
          for (size_t r = 0; r < document.contexts.size(); ++r)
            set.requests.push_back(
                fit_to_length(encode_request(tokenizer, document.contexts[r], document.continuations[r], prefix), context.max_length));
        }
      } catch (const Error& e) {
        throw Error(spec.path + ", line " + std::to_string(document.line) + ": " + e.what());
      }
    }
    set.first_request.push_back(set.requests.size());
    for (const auto& request : set.requests)
      for (const auto* ids : {&request.context, &request.continuation})
        for (int64_t id : *ids)
          if (id >= context.vocab_size)
            throw Error("the tokenizer gives id " + std::to_string(id) + ", beyond the model's " + std::to_string(context.vocab_size) +
                        " embeddings");
    return set;
  });
}

int64_t count_examples(const DatasetSpec& spec, const TaskContext& context) {
  if (spec.kind == "memorization") return int64_t(read_memorization_rows(spec, context).rows.size());
  if (spec.kind == "divergence") return int64_t(read_divergence_rows(spec, context).rows.size());
  if (find_benchmark_kind(spec.kind)) return int64_t(read_benchmark_set(spec, context, false).documents.size());
  throw Error(dataset_on_model(spec, context) + ": unknown kind '" + spec.kind + "' (known: memorization, divergence, " +
              [] {
                std::string names;
                for (const char* name : benchmark_kind_names()) names += (names.empty() ? "" : ", ") + std::string(name);
                return names;
              }() + ")");
}

int64_t rows_per_pass(int batch_size, int64_t token_budget, int64_t tokens_per_row) {
  int64_t rows = std::max(batch_size, 1);
  if (token_budget > 0 && tokens_per_row > 0) rows = std::min(rows, token_budget / tokens_per_row);
  return std::max<int64_t>(rows, 1);
}

BatchShape largest_batch(const DatasetSpec& spec, const TaskContext& context, int batch_size, int64_t token_budget) {
  BatchShape shape;
  if (spec.kind == "memorization") {
    const MemorizationRows set = read_memorization_rows(spec, context);
    const int64_t prefix = set.options.prefix;
    int64_t longest = 0, suffix = 0;
    for (const auto& row : set.rows) {
      const int64_t S = set.options.suffix > 0 ? set.options.suffix : int64_t(row.size()) - prefix;
      longest = std::max(longest, prefix + S), suffix = std::max(suffix, S);
    }
    shape.kind = BatchShape::Kind::memorization;
    shape.rows = std::min<int64_t>(rows_per_pass(batch_size, token_budget, longest), int64_t(set.rows.size()));
    shape.tokens = std::max<int64_t>(longest - 1, 0);  // the suffix's last token is never fed
    shape.scored = suffix;
    return shape;
  }
  if (spec.kind == "divergence") {
    const TokenRows set = read_divergence_rows(spec, context);
    int64_t longest = 0;
    for (const auto& row : set.rows) longest = std::max<int64_t>(longest, int64_t(row.size()));
    shape.kind = BatchShape::Kind::divergence;
    shape.rows = std::min<int64_t>(rows_per_pass(batch_size, token_budget, longest), int64_t(set.rows.size()));
    shape.tokens = longest;
    return shape;
  }
  const BenchmarkSet set = read_benchmark_set(spec, context, true);
  LoglikelihoodOptions engine;
  engine.batch_size = batch_size;
  engine.token_budget = token_budget > 0 ? std::min(set.options.token_budget, token_budget) : set.options.token_budget;
  engine.share_contexts = set.options.share_contexts;
  shape.kind = BatchShape::Kind::loglikelihood;
  double largest = -1;
  for (const PlannedBatch& batch : plan_batches(set.requests, engine)) {
    BatchShape b;
    b.kind = BatchShape::Kind::loglikelihood;
    b.rows = int64_t(batch.contexts.size());
    for (const auto& context_ids : batch.contexts) b.tokens = std::max<int64_t>(b.tokens, int64_t(context_ids.size()));
    std::vector<int64_t> fed;
    for (const auto& group : batch.requests)
      for (size_t r : group) {
        const int64_t n = int64_t(set.requests[r].continuation.size()) - 1;
        b.predicted += n + 1;
        if (n > 0) fed.push_back(n);
      }
    std::sort(fed.rbegin(), fed.rend());
    b.continuation_rows = int64_t(fed.size());
    b.continuation_tokens = fed.empty() ? 0 : fed.front();
    size_t begin = 0;
    for (size_t end : continuation_pass_ends(fed)) {
      const int64_t rows = int64_t(end - begin), positions = rows * fed[begin];
      b.continuation_positions += positions;
      b.largest_pass = std::max(b.largest_pass, rows * b.tokens + positions);
      begin = end;
    }
    // The batch holding the most positions' keys and values: contexts, and each continuation row's copy of its context.
    const double held = double(b.rows * b.tokens) + double(b.continuation_rows * b.tokens + b.continuation_positions);
    if (held > largest) largest = held, shape = b;
  }
  return shape;
}

}  // namespace memsweep
