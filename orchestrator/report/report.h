#pragma once
// memsweep report: what a study's store holds, as tables (report.md), CSV files and figures. Reads the store
// through orchestrator/store/summary.h only (read-only, safe while a study runs); an unfinished study gives a
// report of its done units plus what is missing. Any readable store gives a report: a figure without the data it
// needs is skipped and report.md says why.
//
// Definitions the tables and figures share (one place each, below):
//   memorized set   the model's first dataset (study order) whose role is "memorized" (schemas/study.md: a study
//                   sets roles; memorization sets default to it, controls say role = "control"); EM, TA and CE of
//                   the overview and figures are its; other memorization sets appear in the tables;
//   accuracy        a benchmark's `acc`; the mean accuracy of an intervention is the mean over its benchmarks;
//   relative change (value - baseline) / |baseline|, shown only where the baseline is clear of noise: for a mean of
//                   0/1 or [0, 1] values (EM, TA, acc, acc_norm) more than two standard errors above zero; elsewhere
//                   n/a, and the absolute change beside it is what to read;
//   language / reasoning drop  the mean relative accuracy drop of the tag's benchmarks whose baseline is clear of noise;
//   efficiency      EM drop / max(mean accuracy lost, 0.01), both absolute against the baseline: the blocks that
//                   remove the most memorization per unit of accuracy they cost;
//   uncertainty     ± a standard error of the mean over examples; a change against the baseline is the paired
//                   difference on the same examples with its 95 % t-interval, significant when it stays so after
//                   Holm–Bonferroni over the model's interventions on that dataset and metric (worker/tasks/statistics.h).
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/store/summary.h"
#include "worker/tasks/results.h"

namespace memsweep {

struct ReportDataset {
  std::string name, kind, role;  // role: memorized | control | benchmark | divergence
  std::string tag;  // "language" or "reasoning" for a benchmark (its `tag` option or the kind's default), else ""
  bool is_benchmark() const { return role == "benchmark"; }
};

struct MetricCell {
  Values metrics;  // finalize_metrics of the done units' totals
  int64_t units_done = 0, units = 0;
  InterventionStatistics statistics;  // standard errors; paired differences against the baseline (read_statistics)
};

// What an intervention does to the headline numbers (NaN where the study has no such dataset or no result yet).
struct InterventionSummary {
  std::string intervention;
  std::string kind;            // short_circuit | zero_attention | mixed; "" for the baseline
  int first_block = -1;        // -1: baseline
  bool single_block = false;   // exactly one block changed
  double exact_match, token_accuracy, completion_entropy;  // on the memorized set
  double mean_accuracy;                                    // over the benchmarks
  double language_drop, reasoning_drop;  // mean relative accuracy drop (baseline - value) / baseline per tag
  double em_drop, accuracy_lost, efficiency;  // against the baseline (see the top of this file)
  // Standard errors: of EM, TA, CE and of the mean accuracy (sqrt(sum se_i^2) / k over its k benchmarks, disjoint
  // documents); of the drops, from the paired differences (a tag's relative drop: sqrt(sum (se_i / baseline_i)^2) / k).
  double exact_match_se, token_accuracy_se, completion_entropy_se, mean_accuracy_se;
  double em_drop_se, accuracy_lost_se, language_drop_se, reasoning_drop_se;
  // Significant after Holm–Bonferroni (α = 0.05): EM's change on the memorized set; an accuracy drop of at least one
  // of the tag's benchmarks.
  bool em_significant = false, language_significant = false, reasoning_significant = false;
};

struct ModelReport {
  std::string name;
  int layers = 0;
  std::vector<std::string> interventions;  // study order
  std::vector<ReportDataset> datasets;     // study order
  std::map<std::pair<std::string, std::string>, MetricCell> cells;  // (dataset, intervention) -> metrics
  std::string memorized_set;               // empty when there is none
  std::vector<InterventionSummary> summaries;  // one per intervention, study order
  std::vector<RowFlips> row_flips;             // per memorization set: the store's views surviving_rows, flipped_rows

  const MetricCell* cell(const std::string& dataset, const std::string& intervention) const;
  // The metric's value, NaN when absent.
  double metric(const std::string& dataset, const std::string& intervention, const std::string& name) const;
  // Its standard error, NaN when it has none; its paired difference against the baseline, nullptr when none.
  double standard_error(const std::string& dataset, const std::string& intervention, const std::string& name) const;
  const PairedDifference* paired(const std::string& dataset, const std::string& intervention, const std::string& name) const;
  bool has_baseline() const;
};

struct ReportData {
  std::string store;
  StoreSummary summary;         // study, progress per model and dataset, failures
  std::vector<RunRecord> runs;  // provenance
  std::vector<ModelReport> models;
};

ReportData read_report_data(const std::string& store);

double relative_change(double value, double baseline);
// Whether a mean of `examples` values in [0, 1] (EM, TA, acc) is within noise of zero: not more than two standard
// errors (sqrt(p (1 - p) / n)) above it. Relative changes against such a baseline are not shown.
bool within_noise_of_zero(double mean, double examples);
// relative_change, or NaN where `metric` is a [0, 1] mean whose baseline is within noise of zero.
double shown_relative_change(const std::string& metric, double value, double baseline, double examples);

// The metrics each kind shows in tables, in order: memorization EM/TA/CE, benchmarks acc (and acc_norm when the
// kind has it), divergence the output KL; every metric goes to metrics.csv regardless.
std::vector<std::string> table_metrics(const ModelReport& model, const ReportDataset& dataset);

// A figure of the report: drawn (`png`, an SVG beside it) or skipped with the reason report.md gives.
struct FigureOutcome {
  std::string name, png, skipped;
};

// Writes report.md (its figure section lists `figures`: the files drawn and, for each one skipped, why) and the CSV
// files (metrics, interventions, divergence, examples) into `out`.
// `examples`: also examples.csv, every stored per-example number (a paper-scale store makes it tens of GB).
void write_report_files(const ReportData& data, const std::string& out, const std::vector<FigureOutcome>& figures, bool examples);
// A short table for the terminal: per model and intervention EM, TA, CE and mean accuracy per tag.
std::string summary_table(const ReportData& data);

// The figures as PNG and SVG in `out`, made by gnuplot from data files and scripts it leaves in out/gnuplot/, each
// drawn on its own: per model memorization per block (EM, TA, CE against the baseline, a series per intervention
// kind), accuracy drop per block (language vs reasoning), multi-block interventions, divergence heatmaps (relative
// change and KL, a panel per kind); across models the accuracy drop by relative depth and memorization vs accuracy.
// One without its data, or that gnuplot fails on, is skipped with the reason; without gnuplot every one is.
std::vector<FigureOutcome> write_figures(const ReportData& data, const std::string& out, const std::string& gnuplot);

}  // namespace memsweep
