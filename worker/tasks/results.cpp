#include "worker/tasks/results.h"

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

struct Finalizer {
  const char* kind;
  Values (*finalize)(const Values&);
};
const Finalizer kFinalizers[] = {
    {"memorization", means},
    {"divergence", position_means},
};
}  // namespace

Values finalize_metrics(const std::string& kind, const Values& totals) {
  for (const auto& f : kFinalizers)
    if (kind == f.kind) return f.finalize(totals);
  throw Error("no metrics are defined for dataset kind '" + kind + "'");
}

nlohmann::json to_json(const ShardResult& result) {
  nlohmann::json examples = nlohmann::json::array();
  for (const auto& e : result.examples) examples.push_back({{"index", e.index}, {"values", e.values}, {"detail", e.detail}});
  return {{"totals", result.totals}, {"examples", examples}};
}

ShardResult shard_result_from_json(const nlohmann::json& json) {
  ShardResult result;
  try {
    result.totals = json.at("totals").get<Values>();
    for (const auto& e : json.at("examples"))
      result.examples.push_back({e.at("index").get<int64_t>(), e.at("values").get<Values>(), e.at("detail")});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed shard result: ") + e.what());
  }
  return result;
}

}  // namespace memsweep
