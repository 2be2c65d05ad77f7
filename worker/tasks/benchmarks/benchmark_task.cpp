// The benchmark tasks (see README.md): documents -> harness requests -> tokens once at open; per shard, the
// loglikelihood engine scores every request under every intervention, then each document gets the harness's
// metrics (acc, acc_norm; LAMBADA's acc and loglikelihood; rolling perplexity counts).
#include <algorithm>

#include "worker/base/error.h"
#include "worker/tasks/benchmarks/loglikelihood.h"
#include "worker/tasks/benchmarks/python_text.h"
#include "worker/tasks/kinds.h"

namespace memsweep {
namespace {

class BenchmarkTask : public Task {
 public:
  BenchmarkTask(const DatasetSpec& spec, const TaskContext& context) : spec_(spec) {
    BenchmarkSet set = read_benchmark_set(spec, context, true);
    kind_ = set.kind, options_ = set.options, documents_ = std::move(set.documents), requests_ = std::move(set.requests),
    first_request_ = std::move(set.first_request);
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
    engine.progress = options.progress;
    engine.share_contexts = options_.share_contexts;
    const auto scores = score_requests(model, shard, interventions, engine);
    std::vector<ShardResult> results = named_results(interventions);
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
    if (kind_->type == RequestType::rolling) {
      double loglikelihood = 0;
      for (const auto& s : scores) loglikelihood += s.loglikelihood;
      record.values = {{"loglikelihood", loglikelihood}, {"words", double(document.words)}, {"bytes", double(document.bytes)}};
      record.detail["windows"] = scores.size();
    } else if (kind_->type == RequestType::loglikelihood) {
      const auto& s = scores.front();
      record.values = {{"acc", s.is_greedy ? 1.0 : 0.0}, {"loglikelihood", s.loglikelihood}};
      record.facts = {{"min_top2_gap", s.min_top2_gap}};
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
      if (kind_->acc_norm) record.values["acc_norm"] = prediction_norm == document.gold ? 1.0 : 0.0;
      std::vector<double> sorted = loglikelihoods;
      std::sort(sorted.rbegin(), sorted.rend());
      // Each request's loglikelihood and greedy flag: "loglikelihood.0", "is_greedy.0", ... in choice order.
      for (size_t c = 0; c < scores.size(); ++c)
        record.facts["loglikelihood." + std::to_string(c)] = loglikelihoods[c], record.facts["is_greedy." + std::to_string(c)] = greedy[c];
      record.facts["choice_gap"] = sorted.size() > 1 ? sorted[0] - sorted[1] : 0.0;  // acc flips only where this is ~0
      record.detail["gold"] = document.gold;
      record.detail["prediction"] = prediction;
      record.detail["prediction_norm"] = prediction_norm;
    }
    return record;
  }

  DatasetSpec spec_;
  const BenchmarkKind* kind_ = nullptr;
  BenchmarkOptions options_;
  std::vector<BenchmarkDocument> documents_;
  std::vector<TokenRequest> requests_;
  std::vector<size_t> first_request_;  // per document, its first request; one past the last at the end
};

}  // namespace

std::unique_ptr<Task> open_benchmark_task(const DatasetSpec& spec, const TaskContext& context) {
  return std::make_unique<BenchmarkTask>(spec, context);
}

}  // namespace memsweep
