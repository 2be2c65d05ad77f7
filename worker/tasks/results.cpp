#include "worker/tasks/results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "worker/base/error.h"

namespace memsweep {

void add_totals(Values& a, const Values& b) {
  for (const auto& [key, value] : b) a[key] += value;
}

namespace {
// Totals -> metrics for kinds whose metrics are plain means over examples: every total but "examples" divided
// by the number of examples.
Values means(const Values& totals) {
  Values metrics;
  auto examples = totals.find("examples");
  const double count = examples == totals.end() ? 0.0 : examples->second;
  metrics["examples"] = count;
  for (const auto& [key, value] : totals)
    if (key != "examples") metrics[key] = count > 0 ? value / count : 0.0;
  return metrics;
}

// Divergence totals are sums over token positions: divide by the number of positions.
Values position_means(const Values& totals) {
  Values metrics;
  auto positions = totals.find("positions");
  const double count = positions == totals.end() ? 0.0 : positions->second;
  for (const auto& [key, value] : totals)
    metrics[key] = (key == "examples" || key == "positions" || count == 0) ? value : value / count;
  return metrics;
}

// LAMBADA (lambada_openai): acc is the mean of is-greedy; perplexity = exp(-mean loglikelihood) over documents.
Values lambada_metrics(const Values& totals) {
  Values metrics = means(totals);
  metrics["perplexity"] = std::exp(-metrics["loglikelihood"]);
  return metrics;
}

// Rolling loglikelihood: the harness's weighted perplexities, sums of loglikelihoods over sums of words or bytes.
Values rolling_metrics(const Values& totals) {
  auto total = [&](const char* key) {
    auto at = totals.find(key);
    return at == totals.end() ? 0.0 : at->second;
  };
  const double loglikelihood = total("loglikelihood"), words = total("words"), bytes = total("bytes");
  return {{"examples", total("examples")},
          {"word_perplexity", std::exp(-loglikelihood / words)},
          {"byte_perplexity", std::exp(-loglikelihood / bytes)},
          {"bits_per_byte", -loglikelihood / bytes / std::log(2.0)}};
}

struct Finalizer {
  const char* kind;
  Values (*finalize)(const Values&);
};
const Finalizer kFinalizers[] = {
    {"memorization", means},
    {"divergence", position_means},
    {"piqa", means},
    {"arc_easy", means},
    {"arc_challenge", means},
    {"hellaswag", means},
    {"winogrande", means},
    {"sciq", means},
    {"openbookqa", means},
    {"boolq", means},
    {"multiple_choice", means},
    {"lambada_openai", lambada_metrics},
    {"rolling_loglikelihood", rolling_metrics},
};
}  // namespace

std::string divergence_metric_name(const char* metric, int layer) {
  char text[48];
  std::snprintf(text, sizeof text, "%s.%02d", metric, layer);
  return text;
}

Values finalize_metrics(const std::string& kind, const Values& totals) {
  for (const auto& f : kFinalizers)
    if (kind == f.kind) return f.finalize(totals);
  throw Error("no metrics are defined for dataset kind '" + kind + "'");
}

std::vector<const ShardResult*> results_by_intervention(const std::vector<ShardResult>& results,
                                                        const std::vector<std::string>& interventions, const std::string& owner) {
  std::vector<const ShardResult*> ordered(interventions.size(), nullptr);
  for (const ShardResult& result : results) {
    const auto found = std::find(interventions.begin(), interventions.end(), result.intervention);
    if (found == interventions.end())
      throw Error(owner + ": a result for intervention '" + result.intervention + "', which is not one of its " +
                  std::to_string(interventions.size()) + " interventions");
    const ShardResult*& slot = ordered[size_t(found - interventions.begin())];
    if (slot) throw Error(owner + ": two results for intervention '" + result.intervention + "'");
    slot = &result;
  }
  for (size_t i = 0; i < interventions.size(); ++i)
    if (!ordered[i]) throw Error(owner + ": no result for intervention '" + interventions[i] + "'");
  return ordered;
}

nlohmann::json to_json(const ShardResult& result) {
  nlohmann::json examples = nlohmann::json::array();
  for (const auto& e : result.examples) examples.push_back({{"index", e.index}, {"values", e.values}, {"facts", e.facts}, {"detail", e.detail}});
  return {{"intervention", result.intervention}, {"totals", result.totals}, {"examples", examples}};
}

ShardResult shard_result_from_json(const nlohmann::json& json) {
  ShardResult result;
  try {
    if (!json.is_object() || !json.contains("intervention") || !json.at("intervention").is_string())
      throw Error("malformed shard result: no intervention name");
    result.intervention = json.at("intervention").get<std::string>();
    result.totals = json.at("totals").get<Values>();
    if (!json.at("examples").is_array()) throw Error("malformed shard result: no array of examples");
    for (const auto& e : json.at("examples")) {
      // Only an integer index: a float one (1e300) would be converted with undefined behaviour (found by fuzz_messages).
      const nlohmann::json& index = e.at("index");
      if (!index.is_number_integer() || (index.is_number_unsigned() && index.get<uint64_t>() > uint64_t(INT64_MAX)) || index.get<int64_t>() < 0)
        throw Error("malformed shard result: an example's index is not an integer >= 0 (" + index.dump() + ")");
      result.examples.push_back({index.get<int64_t>(), e.at("values").get<Values>(), e.at("facts").get<Values>(), e.at("detail")});
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed shard result: ") + e.what());
  }
  return result;
}

}  // namespace memsweep
