#pragma once
// What tasks produce, without libtorch, so rank 0, the store and the reports can handle it.
//
// A task runs one shard of a dataset (examples [first, first + count)) under one intervention and returns, per
// example, named numbers (exact match, token accuracy, loglikelihoods, ...) and a JSON detail, plus shard
// totals that add up across shards: sums of per-example values and counts. Dataset-level metrics come from
// the totals of all shards through finalize_metrics(kind, totals), so a study split into any number of
// shards, run on any number of ranks, reports the same numbers.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace memsweep {

using Values = std::map<std::string, double>;

// What the store keeps of it: `values` and `facts` always (schemas/store.md), `detail` only with [store] detail = "full".
struct ExampleRecord {
  int64_t index = 0;    // position of the example in the dataset
  Values values;        // per-example metrics, summed into the shard's totals, e.g. {"exact_match": 1, "token_accuracy": 0.97}
  Values facts;         // the numbers behind them, not summed: where a decision was taken and how close it was (the
                        // first mismatching token and its top-two gap), each request's loglikelihood and greedy flag
  nlohmann::json detail;  // the rest, free-form: generated tokens, per-position gaps, the document's line
};

struct ShardResult {
  std::string intervention;  // the canonical name (Intervention::name()) of the intervention it was computed under
  Values totals;  // additive over shards, e.g. {"examples": 16, "exact_match": 12, "token_accuracy": 14.5}
  std::vector<ExampleRecord> examples;
};

// Adds b's totals into a (keys of either).
void add_totals(Values& a, const Values& b);

// Dataset-level metrics of a task kind from summed totals: e.g. means (total / examples), perplexities.
// Error for an unknown kind. Each kind registers its function in results.cpp.
Values finalize_metrics(const std::string& kind, const Values& totals);

// The divergence kind's per-layer metric names: ("kl", 3) -> "kl.03" (zero-padded so they sort by layer).
std::string divergence_metric_name(const char* metric, int layer);

// `results` in the order of `interventions` (canonical names), each matched by its name. Error starting with `owner`
// ("unit 12") and naming the intervention when a result is for one not in the list or for one already matched, or when
// one in the list has no result.
std::vector<const ShardResult*> results_by_intervention(const std::vector<ShardResult>& results,
                                                        const std::vector<std::string>& interventions, const std::string& owner);

// Serialization for the transport and the store.
nlohmann::json to_json(const ShardResult& result);
ShardResult shard_result_from_json(const nlohmann::json& json);  // Error naming what is malformed

}  // namespace memsweep
