// The report's numbers: the store's totals finalized per dataset and intervention, and the headline summaries.
#include <algorithm>
#include <cmath>
#include <limits>

#include "orchestrator/report/report.h"
#include "worker/base/intervention.h"
#include "worker/tasks/benchmarks/documents.h"
#include "worker/tasks/dataset.h"

namespace memsweep {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  int count = 0;
  for (double v : values)
    if (!std::isnan(v)) sum += v, ++count;
  return count ? sum / count : kNaN;
}

// The standard error of a mean of k independent estimates with these standard errors: sqrt(sum se^2) / k, over the
// defined ones (the same ones mean_of averages when every estimate with a value has its standard error).
double se_of_mean(const std::vector<double>& errors) {
  double sum = 0;
  int count = 0;
  for (double e : errors)
    if (!std::isnan(e)) sum += e * e, ++count;
  return count ? std::sqrt(sum) / count : kNaN;
}

ModelReport& model_named(ReportData& data, const InterventionTotals& row) {
  for (ModelReport& m : data.models)
    if (m.name == row.model) return m;
  data.models.push_back({});
  data.models.back().name = row.model;
  data.models.back().layers = row.model_layers;
  return data.models.back();
}

std::string kind_of(const Intervention& intervention) {
  if (intervention.is_baseline()) return "";
  if (intervention.zero_attention.empty()) return "short_circuit";
  return intervention.short_circuit.empty() ? "zero_attention" : "mixed";
}

void summarize(ModelReport& model) {
  for (const ReportDataset& d : model.datasets)
    if (d.role == "memorized") {
      model.memorized_set = d.name;
      break;
    }
  const std::string& memorized = model.memorized_set;
  for (const std::string& name : model.interventions) {
    InterventionSummary s{name, "", -1, false, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN,
                          kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN, kNaN};
    const Intervention parsed = Intervention::parse(name);
    s.kind = kind_of(parsed);
    s.first_block = parsed.first_block();
    s.single_block = parsed.short_circuit.size() + parsed.zero_attention.size() == 1;
    if (!memorized.empty()) {
      s.exact_match = model.metric(memorized, name, "exact_match");
      s.token_accuracy = model.metric(memorized, name, "token_accuracy");
      s.completion_entropy = model.metric(memorized, name, "completion_entropy");
      s.exact_match_se = model.standard_error(memorized, name, "exact_match");
      s.token_accuracy_se = model.standard_error(memorized, name, "token_accuracy");
      s.completion_entropy_se = model.standard_error(memorized, name, "completion_entropy");
      if (const PairedDifference* p = model.paired(memorized, name, "exact_match"))
        s.em_drop_se = p->standard_error, s.em_significant = p->significant;
    }
    std::vector<double> accuracies, accuracy_se, lost_se, language, reasoning, language_se, reasoning_se;
    for (const ReportDataset& d : model.datasets) {
      if (!d.is_benchmark()) continue;
      const double acc = model.metric(d.name, name, "acc"), base = model.metric(d.name, "baseline", "acc");
      accuracies.push_back(acc);
      accuracy_se.push_back(model.standard_error(d.name, name, "acc"));
      const double drop = -shown_relative_change("acc", acc, base, model.metric(d.name, "baseline", "examples"));
      const bool language_tag = d.tag == "language";
      (language_tag ? language : reasoning).push_back(drop);
      const PairedDifference* p = model.paired(d.name, name, "acc");
      lost_se.push_back(p ? p->standard_error : kNaN);
      (language_tag ? language_se : reasoning_se).push_back(p && !std::isnan(drop) ? p->standard_error / base : kNaN);
      if (p && p->significant && p->difference < 0) (language_tag ? s.language_significant : s.reasoning_significant) = true;
    }
    s.mean_accuracy = mean_of(accuracies);
    s.language_drop = mean_of(language);
    s.reasoning_drop = mean_of(reasoning);
    s.mean_accuracy_se = se_of_mean(accuracy_se);
    s.accuracy_lost_se = se_of_mean(lost_se);
    s.language_drop_se = se_of_mean(language_se);
    s.reasoning_drop_se = se_of_mean(reasoning_se);
    model.summaries.push_back(s);
  }
  const InterventionSummary* baseline = nullptr;
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block < 0) baseline = &s;
  if (!baseline) return;
  const double base_em = baseline->exact_match, base_acc = baseline->mean_accuracy;
  for (InterventionSummary& s : model.summaries) {
    if (s.first_block < 0) continue;
    s.em_drop = base_em - s.exact_match;
    s.accuracy_lost = base_acc - s.mean_accuracy;
    s.efficiency = s.em_drop / std::max(s.accuracy_lost, 0.01);
  }
}

}  // namespace

const MetricCell* ModelReport::cell(const std::string& dataset, const std::string& intervention) const {
  auto found = cells.find({dataset, intervention});
  return found == cells.end() ? nullptr : &found->second;
}

double ModelReport::metric(const std::string& dataset, const std::string& intervention, const std::string& name) const {
  const MetricCell* c = cell(dataset, intervention);
  if (!c || c->units_done == 0) return kNaN;
  auto found = c->metrics.find(name);
  return found == c->metrics.end() ? kNaN : found->second;
}

double ModelReport::standard_error(const std::string& dataset, const std::string& intervention, const std::string& name) const {
  const MetricCell* c = cell(dataset, intervention);
  if (!c || c->units_done == 0) return kNaN;
  auto found = c->statistics.stderrs.find(name + "_stderr");
  return found == c->statistics.stderrs.end() ? kNaN : found->second;
}

const PairedDifference* ModelReport::paired(const std::string& dataset, const std::string& intervention, const std::string& name) const {
  const MetricCell* c = cell(dataset, intervention);
  if (!c || c->units_done == 0) return nullptr;
  auto found = c->statistics.paired.find(name);
  return found == c->statistics.paired.end() ? nullptr : &found->second;
}

bool ModelReport::has_baseline() const {
  return std::find(interventions.begin(), interventions.end(), "baseline") != interventions.end();
}

double relative_change(double value, double baseline) {
  if (std::isnan(value) || std::isnan(baseline) || baseline == 0) return kNaN;
  return (value - baseline) / std::fabs(baseline);
}

bool within_noise_of_zero(double mean, double examples) {
  if (std::isnan(mean) || !(examples > 0) || mean <= 0) return true;
  return mean <= 2 * std::sqrt(std::max(mean * (1 - mean), 0.0) / examples);
}

double shown_relative_change(const std::string& metric, double value, double baseline, double examples) {
  const bool proportion = metric == "exact_match" || metric == "token_accuracy" || metric == "acc" || metric == "acc_norm";
  if (proportion && within_noise_of_zero(baseline, examples)) return kNaN;
  return relative_change(value, baseline);
}

std::vector<std::string> table_metrics(const ModelReport& model, const ReportDataset& dataset) {
  if (dataset.kind == "memorization") return {"exact_match", "token_accuracy", "completion_entropy"};
  if (dataset.kind == "divergence") return {divergence_metric_name("kl", model.layers - 1)};
  if (const BenchmarkKind* kind = find_benchmark_kind(dataset.kind)) {
    if (kind->type == RequestType::rolling) return {"word_perplexity", "bits_per_byte"};
    if (dataset.kind == "lambada_openai") return {"acc", "perplexity"};
    if (kind->acc_norm) return {"acc", "acc_norm"};
    return {"acc"};
  }
  return {};
}

ReportData read_report_data(const std::string& store) {
  ReportData data;
  data.store = store;
  data.summary = read_store_summary(store);
  data.runs = read_runs(store);
  for (const InterventionTotals& row : read_intervention_totals(store)) {
    ModelReport& model = model_named(data, row);
    if (std::find(model.interventions.begin(), model.interventions.end(), row.intervention) == model.interventions.end())
      model.interventions.push_back(row.intervention);
    if (std::none_of(model.datasets.begin(), model.datasets.end(), [&](const ReportDataset& d) { return d.name == row.dataset; })) {
      std::string tag;
      if (row.role == "benchmark") tag = benchmark_tag(DatasetSpec{row.dataset, row.kind, "", row.dataset_options});
      model.datasets.push_back({row.dataset, row.kind, row.role, tag});
    }
    MetricCell& cell = model.cells[{row.dataset, row.intervention}];
    cell.units_done = row.units_done;
    cell.units = row.units;
    cell.metrics = row.metrics;  // finalized once, in summary.cpp: status prints the same numbers
  }
  for (auto& [key, statistics] : read_statistics(store))
    for (ModelReport& model : data.models)
      if (model.name == std::get<0>(key))
        if (auto found = model.cells.find({std::get<1>(key), std::get<2>(key)}); found != model.cells.end())
          found->second.statistics = std::move(statistics);
  for (RowFlips& flips : read_row_flips(store))
    for (ModelReport& model : data.models)
      if (model.name == flips.model) model.row_flips.push_back(std::move(flips));
  for (ModelReport& model : data.models) {
    // The baseline first, whatever the order units were registered in (--extend may add it later).
    std::stable_partition(model.interventions.begin(), model.interventions.end(), [](const std::string& n) { return n == "baseline"; });
    summarize(model);
  }
  return data;
}

}  // namespace memsweep
