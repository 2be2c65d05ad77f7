#pragma once
// memsweep report: what a study's store holds, as tables (report.md), CSV files and figures. Reads the store
// through orchestrator/store/summary.h only (read-only, safe while a study runs); an unfinished study gives a
// report of its done units plus what is missing.
//
// Definitions the tables and figures share (one place each, below):
//   memorized set   the first memorization dataset (study order) whose baseline exact match is > 0; EM, TA and
//                   CE of the figures are its; another memorization set (controls) appears in the tables only;
//   accuracy        a benchmark's `acc`; the mean accuracy of an intervention is the mean over its benchmarks;
//   relative change (value - baseline) / |baseline|, undefined (NaN) when the baseline is 0 or absent;
//   efficiency      EM drop / max(mean accuracy lost, 0.01), both absolute against the baseline: the blocks that
//                   remove the most memorization per unit of accuracy they cost.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/store/summary.h"
#include "worker/tasks/results.h"

namespace memsweep {

struct ReportDataset {
  std::string name, kind;
  std::string tag;  // "language" or "reasoning" for a benchmark (its `tag` option or the kind's default), else ""
  bool is_benchmark() const { return !tag.empty(); }
};

struct MetricCell {
  Values metrics;  // finalize_metrics of the done units' totals
  int64_t units_done = 0, units = 0;
};

// What an intervention does to the headline numbers (NaN where the study has no such dataset or no result yet).
struct InterventionSummary {
  std::string intervention;
  int first_block = -1;        // -1: baseline
  bool single_block = false;   // exactly one block changed
  double exact_match, token_accuracy, completion_entropy;  // on the memorized set
  double mean_accuracy;                                    // over the benchmarks
  double language_drop, reasoning_drop;  // mean relative accuracy drop (baseline - value) / baseline per tag
  double em_drop, accuracy_lost, efficiency;  // against the baseline (see the top of this file)
};

struct ModelReport {
  std::string name;
  int layers = 0;
  std::vector<std::string> interventions;  // study order
  std::vector<ReportDataset> datasets;     // study order
  std::map<std::pair<std::string, std::string>, MetricCell> cells;  // (dataset, intervention) -> metrics
  std::string memorized_set;               // empty when there is none
  std::vector<InterventionSummary> summaries;  // one per intervention, study order

  const MetricCell* cell(const std::string& dataset, const std::string& intervention) const;
  // The metric's value, NaN when absent.
  double metric(const std::string& dataset, const std::string& intervention, const std::string& name) const;
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

// The metrics each kind shows in tables, in order: memorization EM/TA/CE, benchmarks acc (and acc_norm when the
// kind has it), divergence the output KL; every metric goes to metrics.csv regardless.
std::vector<std::string> table_metrics(const ModelReport& model, const ReportDataset& dataset);

// Writes report.md and the CSV files (metrics.csv, interventions.csv, divergence.csv, examples.csv) into `out`;
// report.md links `figures` (PNG paths) or says why there are none (`figures_error`).
void write_report_files(const ReportData& data, const std::string& out, const std::vector<std::string>& figures,
                        const std::string& figures_error);
// A short table for the terminal: per model and intervention EM, TA, CE and mean accuracy per tag.
std::string summary_table(const ReportData& data);

// The four figures as PNG and SVG in `out`, made by gnuplot from data files and scripts it leaves in out/gnuplot/.
// Error naming gnuplot when it is absent or fails. Returns the image paths.
std::vector<std::string> write_figures(const ReportData& data, const std::string& out, const std::string& gnuplot);

}  // namespace memsweep
