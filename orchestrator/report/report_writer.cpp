// report.md, the CSV files and the terminal summary of `memsweep report`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "orchestrator/report/report.h"
#include "worker/base/error.h"
#include "worker/tasks/dataset.h"
#include "worker/base/intervention.h"

namespace memsweep {

namespace {

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

// Tables show 4 decimals; "n/a" where a number is undefined (no result yet, a zero baseline).
std::string cell_number(double value) { return std::isnan(value) ? "n/a" : format("%.4f", value); }
std::string cell_percent(double fraction) { return std::isnan(fraction) ? "n/a" : format("%+.1f%%", 100 * fraction); }
// CSV keeps every digit; empty where undefined.
std::string csv_number(double value) { return std::isnan(value) ? "" : format("%.17g", value); }

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

class CsvFile {
 public:
  CsvFile(const std::string& path, const std::vector<std::string>& header) : path_(path), out_(path) {
    if (!out_) throw Error("cannot write " + path);
    row(header);
  }
  void row(const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) out_ << (i ? "," : "") << csv_field(fields[i]);
    out_ << "\n";
  }
  void close() {
    out_.close();
    if (!out_) throw Error("writing " + path_ + " failed");
  }

 private:
  std::string path_;
  std::ofstream out_;
};

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string text;
  for (size_t i = 0; i < parts.size(); ++i) text += (i ? separator : "") + parts[i];
  return text;
}

double tag_accuracy(const ModelReport& model, const std::string& intervention, const std::string& tag) {
  double sum = 0;
  int count = 0;
  for (const ReportDataset& d : model.datasets) {
    const double acc = d.tag == tag ? model.metric(d.name, intervention, "acc") : NAN;
    if (!std::isnan(acc)) sum += acc, ++count;
  }
  return count ? sum / count : NAN;
}

void write_missing(std::ostream& md, const StoreSummary& summary) {
  int64_t total = 0, done = 0;
  for (const GroupProgress& g : summary.groups) total += g.total, done += g.done;
  if (done == total) {
    md << "The study is complete: all " << total << " units are done.\n\n";
    return;
  }
  md << "**The study is unfinished: " << done << " of " << total << " units are done.** The numbers below cover the "
     << "done units only; a value marked (k/n) rests on k of the n units of its dataset.\n\n## What is missing\n\n"
     << "| model | dataset | units | done | failed | running | pending |\n|---|---|---:|---:|---:|---:|---:|\n";
  for (const GroupProgress& g : summary.groups)
    if (g.done < g.total)
      md << "| " << g.model << " | " << g.dataset << " | " << g.total << " | " << g.done << " | " << g.failed << " | "
         << g.running << " | " << g.pending << " |\n";
  bool any_failed = false;
  for (const FailureRow& f : summary.failures)
    if (f.final) {
      if (!any_failed) md << "\nFailed units (no attempts left) and their last error:\n\n";
      any_failed = true;
      md << "- `" << f.unit_key << "` attempt " << f.attempt << ": " << f.error << "\n";
    }
  md << "\nRerun the study's `memsweep run` command to finish it (done units are kept), then `memsweep report` again.\n\n";
}

std::string signed_number(double value) { return std::isnan(value) ? "n/a" : format("%+.4f", value); }

// "0.8810 ± 0.0506", or the value alone where it has no standard error.
std::string with_error(double value, double error) {
  return std::isnan(value) || std::isnan(error) ? cell_number(value) : cell_number(value) + " ± " + cell_number(error);
}
// A p-value in two significant digits, "*" where it stays significant after Holm–Bonferroni.
std::string p_text(const PairedDifference& p) {
  if (std::isnan(p.p_value)) return "n/a";
  return format(p.p_value < 1e-4 ? "%.1e" : "%.2g", p.p_value) + (p.test == "mcnemar" ? " (McNemar)" : " (t)") + (p.significant ? " *" : "");
}

// Interventions on more than one block (ranges, the last k, combinations): their own table.
void write_multi_block(std::ostream& md, const ModelReport& model) {
  std::vector<const InterventionSummary*> multi;
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block >= 0 && !s.single_block) multi.push_back(&s);
  if (multi.empty()) return;
  md << "### Interventions on several blocks\n\n| intervention | kind | EM | EM drop | mean acc | accuracy lost |\n"
     << "|---|---|---:|---:|---:|---:|\n";
  for (const InterventionSummary* s : multi)
    md << "| " << s->intervention << " | " << s->kind << " | " << with_error(s->exact_match, s->exact_match_se) << " | "
       << with_error(s->em_drop, s->em_drop_se) << (s->em_significant ? " *" : "") << " | "
       << with_error(s->mean_accuracy, s->mean_accuracy_se) << " | " << with_error(s->accuracy_lost, s->accuracy_lost_se) << " |\n";
  md << "\n";
}

std::string with_units(double value, const MetricCell* cell, double error) {
  std::string text = with_error(value, error);
  if (cell && cell->units_done > 0 && cell->units_done < cell->units)
    text += " (" + std::to_string(cell->units_done) + "/" + std::to_string(cell->units) + ")";
  return text;
}

// Per memorization set, from the store's views: the rows the baseline reproduces, those that survive every intervention,
// and the rows each intervention flips.
void write_row_flips(std::ostream& md, const ModelReport& model) {
  for (const RowFlips& f : model.row_flips) {
    md << "### Rows of `" << f.dataset << "`\n\nThe baseline reproduces " << f.memorized << " rows exactly; " << f.surviving
       << " survive every intervention (store view `surviving_rows`). Rows each intervention flips against the baseline "
       << "(view `flipped_rows`; done units only):\n\n| intervention | 1 → 0 (removed) | 0 → 1 (added) |\n|---|---:|---:|\n";
    for (const std::string& intervention : model.interventions) {
      if (intervention == "baseline") continue;
      const auto found = f.flips.find(intervention);
      const auto [removed, added] = found == f.flips.end() ? std::pair<int64_t, int64_t>{0, 0} : found->second;
      md << "| " << intervention << " | " << removed << " | " << added << " |\n";
    }
    md << "\n";
  }
}

void write_model(std::ostream& md, const ModelReport& model) {
  md << "## Model `" << model.name << "` (" << model.layers << " blocks)\n\n";
  std::vector<std::string> benchmarks, others;
  for (const ReportDataset& d : model.datasets) {
    if (d.is_benchmark()) benchmarks.push_back("`" + d.name + "` (" + d.tag + ")");
    else if (d.name != model.memorized_set) others.push_back("`" + d.name + "` (" + d.role + ")");
  }
  md << "Memorized set: " << (model.memorized_set.empty() ? "none (no dataset of this model has the role \"memorized\")" : "`" + model.memorized_set + "`")
     << "; benchmarks: " << (benchmarks.empty() ? "none" : join(benchmarks, ", "))
     << (others.empty() ? "" : "; other sets: " + join(others, ", ")) << ".\n\n";

  md << "### Overview\n\nEM, TA, CE on the memorized set; mean accuracy (`acc`) over the benchmarks; the drops are the mean "
     << "relative accuracy drop against the baseline of the language and of the reasoning benchmarks. ± one standard error "
     << "(of the mean over examples; of a mean over benchmarks sqrt(Σ se²) / k; of a drop, from the paired differences); "
     << "* EM's change, or an accuracy drop of at least one of the tag's benchmarks, significant at α = 0.05 after "
     << "Holm–Bonferroni over the model's interventions.\n\n"
     << "| intervention | EM | TA | CE | mean acc | language drop | reasoning drop |\n|---|---:|---:|---:|---:|---:|---:|\n";
  auto percent_with_error = [](double fraction, double error, bool significant) {
    std::string text = cell_percent(fraction);
    if (!std::isnan(fraction) && !std::isnan(error)) text += format(" ± %.1f%%", 100 * error);
    return text + (significant ? " *" : "");
  };
  for (const InterventionSummary& s : model.summaries)
    md << "| " << s.intervention << " | " << with_error(s.exact_match, s.exact_match_se) << (s.em_significant ? " *" : "") << " | "
       << with_error(s.token_accuracy, s.token_accuracy_se) << " | " << with_error(s.completion_entropy, s.completion_entropy_se)
       << " | " << with_error(s.mean_accuracy, s.mean_accuracy_se) << " | "
       << percent_with_error(s.language_drop, s.language_drop_se, s.language_significant) << " | "
       << percent_with_error(s.reasoning_drop, s.reasoning_drop_se, s.reasoning_significant) << " |\n";

  std::vector<InterventionSummary> ranked;
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block >= 0 && !std::isnan(s.efficiency)) ranked.push_back(s);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.efficiency > b.efficiency; });
  md << "\n### Largest memorization drop per unit of accuracy lost\n\n";
  if (ranked.empty()) {
    md << "Needs a baseline, a memorized set and at least one benchmark with results.\n\n";
  } else {
    md << "Efficiency = EM drop / max(mean accuracy lost, 0.01), both absolute against the baseline (± the paired standard "
       << "errors; * the EM drop is significant after Holm–Bonferroni).\n\n"
       << "| rank | intervention | EM drop | accuracy lost | efficiency |\n|---:|---|---:|---:|---:|\n";
    for (size_t i = 0; i < ranked.size() && i < 5; ++i)
      md << "| " << i + 1 << " | " << ranked[i].intervention << " | " << with_error(ranked[i].em_drop, ranked[i].em_drop_se)
         << (ranked[i].em_significant ? " *" : "") << " | " << with_error(ranked[i].accuracy_lost, ranked[i].accuracy_lost_se)
         << " | " << format("%.2f", ranked[i].efficiency) << " |\n";
    md << "\n";
  }

  write_row_flips(md, model);
  write_multi_block(md, model);
  md << "### Per intervention\n\nEvery dataset's metrics ± their standard error (of the mean over examples; LAMBADA's "
     << "perplexity: lm-evaluation-harness's bootstrap; none for word/byte perplexity, bits per byte and the divergence "
     << "metrics, which are not means over examples), the baseline's, the change (value − baseline: the mean paired "
     << "difference on the same examples, with its 95 % t-interval), its p-value (exact McNemar for EM, acc, acc_norm; "
     << "paired t-test otherwise; * significant at α = 0.05 after Holm–Bonferroni over the model's interventions on that "
     << "dataset and metric) and the relative change (value − baseline) / |baseline|; n/a where the baseline is within "
     << "noise of zero (EM, TA, acc: not two standard errors above it), where the change is what to read.\n\n";
  for (const std::string& intervention : model.interventions) {
    md << "#### " << intervention << "\n\n| dataset | metric | value | baseline | change [95 % CI] | p | relative change |\n"
       << "|---|---|---:|---:|---:|---:|---:|\n";
    for (const ReportDataset& d : model.datasets)
      for (const std::string& metric : table_metrics(model, d)) {
        const double value = model.metric(d.name, intervention, metric), baseline = model.metric(d.name, "baseline", metric);
        if (d.kind == "divergence" && std::isnan(value)) continue;  // the baseline changes no layer
        const PairedDifference* p = model.paired(d.name, intervention, metric);
        std::string change = signed_number(value - baseline);
        if (p && !std::isnan(p->ci_low)) change += " [" + signed_number(p->ci_low) + ", " + signed_number(p->ci_high) + "]";
        md << "| " << d.name << " | " << metric << " | "
           << with_units(value, model.cell(d.name, intervention), model.standard_error(d.name, intervention, metric)) << " | "
           << with_error(baseline, model.standard_error(d.name, "baseline", metric)) << " | " << change << " | "
           << (p ? p_text(*p) : "") << " | "
           << cell_percent(shown_relative_change(metric, value, baseline, model.metric(d.name, "baseline", "examples"))) << " |\n";
      }
    md << "\n";
  }
}

void write_provenance(std::ostream& md, const ReportData& data) {
  md << "## Provenance\n\nStore `" << data.store << "` (schema " << data.summary.schema_version << "), study `"
     << data.summary.study_name << "`, study file sha256:" << data.summary.study_hash << ".\n\n"
     << "| run | memsweep | commit | libtorch | host | ranks | devices | started | ended | outcome |\n"
     << "|---:|---|---|---|---|---:|---|---|---|---|\n";
  for (const RunRecord& r : data.runs)
    md << "| " << r.id << " | " << r.memsweep_version << " | " << r.git_commit << " | " << r.libtorch_version << " | " << r.host
       << " | " << r.ranks << " | " << join(r.devices, ", ") << " | " << r.started_at << " | " << r.ended_at << " | "
       << (r.outcome.empty() ? "running or ended without a word" : r.outcome) << " |\n";
  md << "\n";
}

void write_csv_files(const ReportData& data, const std::string& out) {
  CsvFile metrics(out + "/metrics.csv", {"model", "dataset", "kind", "role", "tag", "intervention", "units_done", "units",
                                         "metric", "value", "stderr", "baseline", "baseline_stderr", "change", "relative_change",
                                         "paired_n", "difference", "difference_stderr", "ci_low", "ci_high", "test", "p_value",
                                         "p_holm", "significant", "removed", "added"});
  CsvFile divergence(out + "/divergence.csv", {"model", "dataset", "intervention", "first_block", "layer", "relative_change", "kl"});
  CsvFile summaries(out + "/interventions.csv",
                    {"model", "intervention", "kind", "first_block", "single_block", "memorized_set", "exact_match", "token_accuracy",
                     "completion_entropy", "mean_accuracy", "language_drop", "reasoning_drop", "em_drop", "accuracy_lost", "efficiency",
                     "exact_match_stderr", "token_accuracy_stderr", "completion_entropy_stderr", "mean_accuracy_stderr",
                     "language_drop_stderr", "reasoning_drop_stderr", "em_drop_stderr", "accuracy_lost_stderr", "em_significant",
                     "language_significant", "reasoning_significant"});
  for (const ModelReport& model : data.models) {
    for (const ReportDataset& d : model.datasets)
      for (const std::string& intervention : model.interventions) {
        const MetricCell* cell = model.cell(d.name, intervention);
        if (!cell) continue;
        for (const auto& [name, value] : cell->metrics) {
          const double baseline = model.metric(d.name, "baseline", name);
          std::vector<std::string> row = {
              model.name, d.name, d.kind, d.role, d.tag, intervention, std::to_string(cell->units_done), std::to_string(cell->units),
              name, csv_number(value), csv_number(model.standard_error(d.name, intervention, name)), csv_number(baseline),
              csv_number(model.standard_error(d.name, "baseline", name)), csv_number(value - baseline),
              csv_number(shown_relative_change(name, value, baseline, model.metric(d.name, "baseline", "examples")))};
          if (const PairedDifference* p = model.paired(d.name, intervention, name)) {
            const bool mcnemar = p->test == "mcnemar";
            for (std::string field : {std::to_string(p->n), csv_number(p->difference), csv_number(p->standard_error), csv_number(p->ci_low),
                                      csv_number(p->ci_high), p->test, csv_number(p->p_value), csv_number(p->p_holm),
                                      std::string(p->significant ? "1" : "0"), mcnemar ? std::to_string(p->removed) : "",
                                      mcnemar ? std::to_string(p->added) : ""})
              row.push_back(field);
          } else {
            row.resize(row.size() + 11);
          }
          metrics.row(row);
        }
        if (d.kind != "divergence") continue;
        for (int layer = 0; layer < model.layers; ++layer) {
          const double change = model.metric(d.name, intervention, divergence_metric_name("relative_change", layer));
          if (std::isnan(change)) continue;
          const int first = Intervention::parse(intervention).first_block();
          divergence.row({model.name, d.name, intervention, std::to_string(first), std::to_string(layer), csv_number(change),
                          csv_number(model.metric(d.name, intervention, divergence_metric_name("kl", layer)))});
        }
      }
    for (const InterventionSummary& s : model.summaries)
      summaries.row({model.name, s.intervention, s.kind, std::to_string(s.first_block), s.single_block ? "1" : "0", model.memorized_set,
                     csv_number(s.exact_match), csv_number(s.token_accuracy), csv_number(s.completion_entropy),
                     csv_number(s.mean_accuracy), csv_number(s.language_drop), csv_number(s.reasoning_drop),
                     csv_number(s.em_drop), csv_number(s.accuracy_lost), csv_number(s.efficiency), csv_number(s.exact_match_se),
                     csv_number(s.token_accuracy_se), csv_number(s.completion_entropy_se), csv_number(s.mean_accuracy_se),
                     csv_number(s.language_drop_se), csv_number(s.reasoning_drop_se), csv_number(s.em_drop_se),
                     csv_number(s.accuracy_lost_se), s.em_significant ? "1" : "0", s.language_significant ? "1" : "0",
                     s.reasoning_significant ? "1" : "0"});
  }
  metrics.close();
  divergence.close();
  summaries.close();
}

// Every stored per-example number, long format: one row per example and metric or fact.
void write_examples_csv(const ReportData& data, const std::string& out) {
  CsvFile examples(out + "/examples.csv", {"model", "dataset", "intervention", "example_index", "name", "fact", "value"});
  for_each_example(data.store, [&](const ExampleValues& e) {
    for (bool fact : {false, true})
      for (const auto& [name, value] : fact ? e.facts : e.values)
        examples.row({e.model, e.dataset, e.intervention, std::to_string(e.index), name, fact ? "1" : "0", csv_number(value)});
  });
  examples.close();
}

}  // namespace

void write_report_files(const ReportData& data, const std::string& out, const std::vector<FigureOutcome>& figures, bool examples) {
  std::ofstream md(out + "/report.md");
  if (!md) throw Error("cannot write " + out + "/report.md");
  md << "# memsweep report: study `" << data.summary.study_name << "`\n\n";
  write_missing(md, data.summary);
  for (const ModelReport& model : data.models) write_model(md, model);
  md << "## Figures\n\n";
  std::vector<std::string> drawn, skipped;
  for (const FigureOutcome& f : figures)
    (f.png.empty() ? skipped : drawn).push_back(f.png.empty() ? "- `" + f.name + "`: " + f.skipped : "`" + f.name + ".png`");
  md << "Drawn: " << (drawn.empty() ? "none" : join(drawn, ", ")) << " (each with an SVG beside it). Bars and bands are ± 1 "
     << "standard error; a black ring marks a change against the baseline that is significant after Holm–Bonferroni "
     << "(α = 0.05). The divergence heatmaps have none: their metrics are means over token positions, not over examples.\n\n";
  if (!skipped.empty()) md << "Skipped:\n\n" << join(skipped, "\n") << "\n\n";
  for (const FigureOutcome& f : figures)
    if (!f.png.empty()) md << "![" << f.name << "](" << f.name << ".png)\n\n";
  write_provenance(md, data);
  md << "## Files\n\n- `metrics.csv`: every metric per model, dataset and intervention, with its standard error, the baseline, the "
        "relative change and the paired difference against the baseline (n, mean, standard error, 95 % interval, test, p, "
        "Holm-adjusted p, significant, and for 0/1 metrics the rows removed (1 → 0) and added (0 → 1));\n"
     << "- `interventions.csv`: the overview's numbers and the efficiency ranking's, with their standard errors and significance;\n"
     << "- `divergence.csv`: per intervention and later layer, the residual stream's relative change and the logit lens's KL;\n"
     << (examples ? "- `examples.csv`: every stored per-example number (long format: one row per example and metric or fact);\n"
                  : "- `examples.csv`: not written (per-example numbers: `memsweep report --examples`, or the store's views and "
                    "columns, schemas/store.md);\n")
     << "- `gnuplot/`: the figures' data and scripts (`gnuplot gnuplot/NAME.gp` redraws one).\n";
  md.close();
  if (!md) throw Error("writing " + out + "/report.md failed");
  write_csv_files(data, out);
  if (examples) write_examples_csv(data, out);
}

std::string summary_table(const ReportData& data) {
  std::ostringstream text;
  for (const ModelReport& model : data.models) {
    text << model.name << " (" << model.layers << " blocks; EM, TA, CE on "
         << (model.memorized_set.empty() ? "no memorized set" : model.memorized_set) << "; acc = mean benchmark accuracy)\n";
    char line[200];
    std::snprintf(line, sizeof line, "%-22s %7s %7s %7s %8s %8s %9s\n", "intervention", "EM", "TA", "CE", "acc", "language",
                  "reasoning");
    text << line;
    for (const InterventionSummary& s : model.summaries) {
      auto number = [](double v, const char* pattern) { return std::isnan(v) ? std::string("n/a") : format(pattern, v); };
      std::snprintf(line, sizeof line, "%-22s %7s %7s %7s %8s %8s %9s\n", s.intervention.c_str(), number(s.exact_match, "%.3f").c_str(),
                    number(s.token_accuracy, "%.3f").c_str(), number(s.completion_entropy, "%.2f").c_str(),
                    number(s.mean_accuracy, "%.3f").c_str(), number(tag_accuracy(model, s.intervention, "language"), "%.3f").c_str(),
                    number(tag_accuracy(model, s.intervention, "reasoning"), "%.3f").c_str());
      text << line;
    }
  }
  return text.str();
}

}  // namespace memsweep
