// The benchmark tasks (see README.md): documents -> harness requests -> tokens once at open; per shard, the
// loglikelihood engine scores every request under every intervention, then each document gets the harness's
// metrics (acc, acc_norm; LAMBADA's acc and loglikelihood; rolling perplexity counts).
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/model/config_reader.h"
#include "worker/tasks/benchmarks/documents.h"
#include "worker/tasks/benchmarks/loglikelihood.h"
#include "worker/tasks/benchmarks/python_text.h"
#include "worker/tasks/kinds.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {
namespace {

struct BenchmarkOptions {
  int64_t limit = -1;
  std::string tag;
  int64_t token_budget = 8192;
  bool share_contexts = true;
  MultipleChoiceTemplate settings;
};

BenchmarkOptions read_options(const DatasetSpec& spec, const BenchmarkKind& kind) {
  BenchmarkOptions o;
  o.tag = kind.default_tag;
  const std::string where = "dataset '" + spec.name + "' (" + spec.kind + ")";
  const bool generic = spec.kind == "multiple_choice", rolling = kind.type == RequestType::rolling;
  std::string known = "limit, tag, token_budget, share_contexts";
  if (generic) known += ", context, choices, label, label_keys, delimiter";
  if (rolling) known += ", text_field";
  if (!spec.options.is_null() && !spec.options.is_object()) throw Error(where + ": options must be a table");
  bool has_context = false, has_choices = false, has_label = false;
  const nlohmann::json options = spec.options.is_null() ? nlohmann::json::object() : spec.options;
  for (const auto& item : options.items()) {
    const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture those in lambdas
    const nlohmann::json& value = item.value();
    auto text = [&] {
      if (!value.is_string()) throw Error(where + ": option '" + key + "' must be a string, found " + value.dump());
      return value.template get<std::string>();
    };
    auto integer = [&](int64_t minimum) {
      if (!value.is_number_integer() || value.template get<int64_t>() < minimum)
        throw Error(where + ": option '" + key + "' must be an integer >= " + std::to_string(minimum) + ", found " + value.dump());
      return value.template get<int64_t>();
    };
    if (key == "limit") o.limit = integer(0);
    else if (key == "token_budget") o.token_budget = integer(1);
    else if (key == "tag") {
      o.tag = text();
      if (o.tag != "language" && o.tag != "reasoning") throw Error(where + ": option 'tag' must be \"language\" or \"reasoning\", found \"" + o.tag + "\"");
    } else if (key == "share_contexts") {
      if (!value.is_boolean()) throw Error(where + ": option 'share_contexts' must be true or false, found " + value.dump());
      o.share_contexts = value.template get<bool>();
    } else if (generic && key == "context") o.settings.context = text(), has_context = true;
    else if (generic && key == "choices") {
      has_choices = true;
      if (value.is_string()) o.settings.choices_field = value.template get<std::string>();
      else if (value.is_array() && !value.empty() && std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_string(); }))
        o.settings.choice_templates = value.template get<std::vector<std::string>>();
      else throw Error(where + ": option 'choices' must be a field name or a list of templates, found " + value.dump());
    } else if (generic && key == "label") o.settings.label_field = text(), has_label = true;
    else if (generic && key == "label_keys") o.settings.label_keys_field = text();
    else if (generic && key == "delimiter") o.settings.delimiter = text();
    else if (rolling && key == "text_field") o.settings.text_field = text();
    else throw Error(where + ": unknown option '" + key + "' (" + known + ")");
  }
  if (generic && !(has_context && has_choices && has_label))
    throw Error(where + ": a multiple_choice dataset needs the options context, choices and label");
  return o;
}

class BenchmarkTask : public Task {
 public:
  BenchmarkTask(const DatasetSpec& spec, const TaskContext& context, const BenchmarkKind& kind)
      : spec_(spec), kind_(kind), options_(read_options(spec, kind)) {
    const std::string where = "dataset '" + spec.name + "' (" + spec.kind + ")";
    if (!context.tokenizer) throw Error(where + ": a benchmark needs the model's tokenizer, and none was found (use --tokenizer)");
    const Tokenizer& tokenizer = *context.tokenizer;
    int64_t eot = -1;
    if (auto id = tokenizer.eos_id()) eot = *id;
    else if (!context.eos_token_ids.empty()) eot = context.eos_token_ids.front();
    else throw Error(where + ": the tokenizer has no <|endoftext|> and the model no eos_token_id: nothing to condition an empty context on");
    max_length_ = context.max_length > 0 ? context.max_length : kHarnessDefaultMaxLength;
    documents_ = read_benchmark_documents(spec.path, kind, options_.settings, options_.limit);
    for (const auto& document : documents_) {
      first_request_.push_back(requests_.size());
      try {
        if (kind.type == RequestType::rolling) {
          auto ids = tokenizer.encode(document.continuations.front());
          for (auto& window : rolling_windows(std::vector<int64_t>(ids.begin(), ids.end()), eot, max_length_))
            requests_.push_back(std::move(window));
        } else {
          for (size_t r = 0; r < document.contexts.size(); ++r)
            requests_.push_back(fit_to_length(encode_request(tokenizer, document.contexts[r], document.continuations[r], eot), max_length_));
        }
      } catch (const Error& e) {
        throw Error(spec.path + ", line " + std::to_string(document.line) + ": " + e.what());
      }
    }
    first_request_.push_back(requests_.size());
    for (const auto& request : requests_)
      for (const auto* ids : {&request.context, &request.continuation})
        for (int64_t id : *ids)
          if (id >= context.vocab_size && context.vocab_size > 0)
            throw Error(where + ": the tokenizer gives id " + std::to_string(id) + ", beyond the model's " + std::to_string(context.vocab_size) + " embeddings");
  }

  std::string kind() const override { return spec_.kind; }
  int64_t num_examples() const override { return int64_t(documents_.size()); }

  std::vector<ShardResult> run(CausalLM& model, int64_t first, int64_t count, const std::vector<Intervention>& interventions,
                               const RunOptions& options) override {
    if (first < 0 || count < 0 || first + count > num_examples())
      throw Error("dataset '" + spec_.name + "': shard [" + std::to_string(first) + ", " + std::to_string(first + count) +
                  ") is outside its " + std::to_string(num_examples()) + " documents");
    const size_t begin = first_request_[size_t(first)], end = first_request_[size_t(first + count)];
    const std::vector<TokenRequest> shard(requests_.begin() + int64_t(begin), requests_.begin() + int64_t(end));
    LoglikelihoodOptions engine;
    engine.batch_size = options.batch_size;
    engine.reuse_lower_layers = options.reuse_lower_layers;
    engine.token_budget = options.token_budget > 0 ? std::min(options_.token_budget, options.token_budget) : options_.token_budget;
    engine.stop = options.stop;
    engine.share_contexts = options_.share_contexts;
    const auto scores = score_requests(model, shard, interventions, engine);
    std::vector<ShardResult> results(interventions.size());
    for (size_t k = 0; k < interventions.size(); ++k)
      for (int64_t d = first; d < first + count; ++d) {
        const auto from = scores[k].begin() + int64_t(first_request_[size_t(d)] - begin);
        ExampleRecord record = score_document(d, std::vector<LoglikelihoodResult>(from, from + int64_t(first_request_[size_t(d) + 1] - first_request_[size_t(d)])));
        for (const auto& [key, value] : record.values) results[k].totals[key] += value;
        results[k].totals["examples"] += 1;
        results[k].examples.push_back(std::move(record));
      }
    return results;
  }

 private:
  ExampleRecord score_document(int64_t index, const std::vector<LoglikelihoodResult>& scores) const {
    const BenchmarkDocument& document = documents_[size_t(index)];
    ExampleRecord record;
    record.index = index;
    record.detail = {{"line", document.line}};
    if (kind_.type == RequestType::rolling) {
      double loglikelihood = 0;
      for (const auto& s : scores) loglikelihood += s.loglikelihood;
      record.values = {{"loglikelihood", loglikelihood}, {"words", double(document.words)}, {"bytes", double(document.bytes)}};
      record.detail["windows"] = scores.size();
    } else if (kind_.type == RequestType::loglikelihood) {
      const auto& s = scores.front();
      record.values = {{"acc", s.is_greedy ? 1.0 : 0.0}, {"loglikelihood", s.loglikelihood}};
      record.detail["is_greedy"] = s.is_greedy;
      record.detail["loglikelihood"] = s.loglikelihood;
      record.detail["min_top2_gap"] = s.min_top2_gap;
    } else {
      std::vector<double> loglikelihoods, normalized;
      std::vector<bool> greedy;
      // acc_norm divides by len(choice) in code points, the choice as doc_to_choice gives it (no delimiter).
      for (size_t c = 0; c < scores.size(); ++c) {
        loglikelihoods.push_back(scores[c].loglikelihood);
        normalized.push_back(scores[c].loglikelihood / double(code_point_length(document.choices[c])));
        greedy.push_back(scores[c].is_greedy);
      }
      // np.argmax: the first of equal maxima.
      auto argmax = [](const std::vector<double>& v) { return int64_t(std::max_element(v.begin(), v.end()) - v.begin()); };
      const int64_t prediction = argmax(loglikelihoods), prediction_norm = argmax(normalized);
      record.values["acc"] = prediction == document.gold ? 1.0 : 0.0;
      if (kind_.acc_norm) record.values["acc_norm"] = prediction_norm == document.gold ? 1.0 : 0.0;
      std::vector<double> sorted = loglikelihoods;
      std::sort(sorted.rbegin(), sorted.rend());
      record.detail["gold"] = document.gold;
      record.detail["prediction"] = prediction;
      record.detail["prediction_norm"] = prediction_norm;
      record.detail["loglikelihoods"] = loglikelihoods;
      record.detail["is_greedy"] = greedy;
      record.detail["choice_gap"] = sorted.size() > 1 ? sorted[0] - sorted[1] : 0.0;  // acc flips only where this is ~0
    }
    return record;
  }

  static constexpr int64_t kHarnessDefaultMaxLength = 2048;
  DatasetSpec spec_;
  const BenchmarkKind& kind_;
  BenchmarkOptions options_;
  int64_t max_length_ = 0;
  std::vector<BenchmarkDocument> documents_;
  std::vector<TokenRequest> requests_;
  std::vector<size_t> first_request_;  // per document, its first request; one past the last at the end
};

}  // namespace

std::unique_ptr<Task> open_benchmark_task(const DatasetSpec& spec, const TaskContext& context) {
  const BenchmarkKind* kind = find_benchmark_kind(spec.kind);
  if (!kind) throw Error("dataset '" + spec.name + "': '" + spec.kind + "' is not a benchmark kind");
  return std::make_unique<BenchmarkTask>(spec, context, *kind);
}

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

std::string benchmark_tag(const DatasetSpec& spec) {
  const BenchmarkKind* kind = find_benchmark_kind(spec.kind);
  if (!kind) throw Error("dataset '" + spec.name + "': '" + spec.kind + "' is not a benchmark kind");
  return read_options(spec, *kind).tag;
}

}  // namespace memsweep
