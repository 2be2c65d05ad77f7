// The report's figures, drawn by gnuplot (pngcairo and svg terminals) from data files and scripts this file
// writes to OUT/gnuplot/, so a reader can redraw or restyle one with `gnuplot OUT/gnuplot/NAME.gp`. Each figure is
// drawn on its own: one without its data throws Skip (its reason goes to report.md), and a gnuplot failure skips it.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <spawn.h>
#include <sstream>

#include "orchestrator/report/report.h"
#include "worker/base/error.h"
#include "worker/tasks/dataset.h"

extern char** environ;

namespace memsweep {

namespace {

const char* const kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
const char* colour(size_t i) { return kColours[i % (sizeof kColours / sizeof *kColours)]; }

std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

// A string inside a gnuplot single-quoted literal ('' is a quote); underscores would be subscripts in
// enhanced text mode, so titles are written with `noenhanced`.
std::string quoted(const std::string& text) {
  std::string q = "'";
  for (char c : text) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

// A text column of a data file: double-quoted (gnuplot reads "a b" as one column), without quotes inside.
std::string data_text(const std::string& text) {
  std::string q = "\"";
  for (char c : text) q += c == '"' ? '\'' : c;
  return q + "\"";
}

std::string file_safe(const std::string& name) {
  std::string safe;
  for (char c : name) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  return safe;
}

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream folders(path ? path : "");
  for (std::string folder; std::getline(folders, folder, ':');) {
    const std::string candidate = (folder.empty() ? "." : folder) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs gnuplot on a script, its messages kept in SCRIPT.log; Error with their last line when it fails.
void run_gnuplot(const std::string& gnuplot, const std::string& script) {
  std::vector<char*> argv = {const_cast<char*>(gnuplot.c_str()), const_cast<char*>(script.c_str()), nullptr};
  const std::string log = script + ".log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, gnuplot.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw Error("cannot start " + gnuplot + " for " + script);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream messages(log);
    std::string line, last;
    while (std::getline(messages, line))
      if (!line.empty()) last = line;
    throw Error("gnuplot failed on " + script + (last.empty() ? "" : ": " + last) + " (all its messages: " + log + ")");
  }
}

class Figure {
 public:
  Figure(const std::string& out, const std::string& name, int width, int height)
      : out_(out), name_(name), width_(width), height_(height) {}
  // A data file beside the script; returns its path as the script should name it.
  std::string data(const std::string& suffix, const std::string& rows) {
    const std::string path = out_ + "/gnuplot/" + name_ + suffix + ".dat";
    std::ofstream(path) << rows;
    return quoted(path);
  }
  const std::string& name() const { return name_; }
  // Writes the script (the body drawn once per terminal), runs gnuplot, returns the PNG path.
  std::string draw(const std::string& gnuplot, const std::string& body) {
    const std::string script = out_ + "/gnuplot/" + name_ + ".gp";
    std::ofstream gp(script);
    gp << "# " << name_ << ": written by memsweep report\n";
    const std::string terminals[] = {
        "set terminal pngcairo noenhanced size " + std::to_string(width_) + "," + std::to_string(height_) + " font 'sans,11'",
        "set terminal svg noenhanced size " + std::to_string(width_) + "," + std::to_string(height_) + " dynamic font 'sans,11'"};
    const std::string outputs[] = {out_ + "/" + name_ + ".png", out_ + "/" + name_ + ".svg"};
    for (int i = 0; i < 2; ++i) gp << "reset\n" << terminals[i] << "\nset output " << quoted(outputs[i]) << "\n" << body << "\nunset output\n";
    gp.close();
    run_gnuplot(gnuplot, script);
    return outputs[0];
  }

 private:
  std::string out_, name_;
  int width_, height_;
};

const std::string kCommon = "set grid lc rgb '#dddddd'\nset border lw 1\n";

// A series per intervention kind, in this order and colour.
const char* const kKinds[] = {"short_circuit", "zero_attention"};
const char* kind_colour(const std::string& kind) { return kind == "zero_attention" ? "#d62728" : "#1f77b4"; }
const char* kind_label(const std::string& kind) { return kind == "zero_attention" ? "attention zeroed" : "attention short-circuited"; }

// A figure that cannot be drawn: why, in words report.md prints.
struct Skip {
  std::string reason;
};

bool any_value(const std::vector<double>& values) {
  return std::any_of(values.begin(), values.end(), [](double v) { return !std::isnan(v); });
}

// The model's single-block interventions of `kind`, in block order.
std::vector<const InterventionSummary*> single_blocks(const ModelReport& model, const std::string& kind) {
  std::vector<const InterventionSummary*> blocks;
  for (const InterventionSummary& s : model.summaries)
    if (s.single_block && s.kind == kind) blocks.push_back(&s);
  std::stable_sort(blocks.begin(), blocks.end(), [](auto* a, auto* b) { return a->first_block < b->first_block; });
  return blocks;
}

const InterventionSummary* baseline_of(const ModelReport& model) {
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block < 0) return &s;
  return nullptr;
}

// A horizontal dashed line at the baseline's value, or nothing without one.
std::string baseline_line(double value) {
  return std::isnan(value) ? "" : ", " + number(value) + " with lines dt 2 lw 2 lc rgb 'black' title 'baseline'";
}

// The baseline's value ± one standard error as a grey band (drawn first, behind the series), or nothing.
std::string baseline_band(double value, double error) {
  if (std::isnan(value) || std::isnan(error) || error == 0) return "";
  return "'+' using 1:(" + number(value - error) + "):(" + number(value + error) +
         ") with filledcurves fc rgb '#bbbbbb' fs transparent solid 0.35 noborder title 'baseline ± 1 SE', ";
}

// 1 where the paired difference of `metric` against the baseline is significant after Holm–Bonferroni, else 0.
int significant(const ModelReport& model, const std::string& dataset, const std::string& intervention, const std::string& metric) {
  const PairedDifference* p = model.paired(dataset, intervention, metric);
  return p && p->significant ? 1 : 0;
}

const std::string kSignificantTitle = "significant vs baseline (Holm, α = 0.05)";

// Per model: EM, TA and CE on the memorized set per block, a panel each with its own baseline, a series per kind.
std::string memorization_figure(const ModelReport& model, Figure& figure, const std::string& gnuplot) {
  if (model.memorized_set.empty()) throw Skip{"model '" + model.name + "' has no dataset with the role \"memorized\""};
  const InterventionSummary* base = baseline_of(model);
  const char* metrics[] = {"exact_match", "token_accuracy", "completion_entropy"};
  const char* titles[] = {"exact match (EM)", "token accuracy (TA)", "completion entropy (CE, nats summed over the suffix)"};
  std::vector<std::pair<std::string, std::string>> series;  // (kind, data file)
  for (const char* kind : kKinds) {
    std::ostringstream rows;
    rows << "# block, then per metric (EM, TA, CE): value, standard error, significant vs baseline (Holm)\n";
    std::vector<double> values;
    for (const InterventionSummary* s : single_blocks(model, kind)) {
      rows << s->first_block;
      for (const char* metric : metrics)
        rows << " " << number(model.metric(model.memorized_set, s->intervention, metric)) << " "
             << number(model.standard_error(model.memorized_set, s->intervention, metric)) << " "
             << significant(model, model.memorized_set, s->intervention, metric);
      rows << "\n";
      values.push_back(s->exact_match);
    }
    if (any_value(values)) series.push_back({kind, figure.data(std::string("_") + kind, rows.str())});
  }
  if (series.empty())
    throw Skip{"no single-block intervention of model '" + model.name + "' has results on '" + model.memorized_set + "' yet"};
  std::ostringstream gp;
  gp << kCommon << "set multiplot layout 3,1 title " << quoted("Model " + model.name + ": memorization on " + model.memorized_set +
                                                              " with one block's attention changed (bars: ± 1 standard error; dashed: baseline)")
     << "\nset xrange [-0.5:" << model.layers - 0.5 << "]\nset xtics 1\nset key outside right top\nset samples 2\n";
  for (int m = 0; m < 3; ++m) {
    const double base_value = base ? model.metric(model.memorized_set, "baseline", metrics[m]) : NAN;
    const double base_error = base ? model.standard_error(model.memorized_set, "baseline", metrics[m]) : NAN;
    const int value = 2 + 3 * m, error = value + 1, flag = value + 2;
    gp << "set title " << quoted(titles[m]) << "\n" << (m == 2 ? "set xlabel 'block'\nset autoscale y\n" : "set yrange [-0.05:1.05]\n")
       << "plot " << baseline_band(base_value, base_error);
    for (size_t k = 0; k < series.size(); ++k)
      gp << (k ? ", " : "") << series[k].second << " using 1:" << value << ":" << error << " with yerrorlines lw 2 pt 7 lc rgb '"
         << kind_colour(series[k].first) << "' title " << quoted(kind_label(series[k].first)) << ", " << series[k].second
         << " using 1:($" << flag << " > 0 ? $" << value << " : NaN) with points pt 6 ps 2.5 lw 2 lc rgb 'black' "
         << (k ? "notitle" : "title " + quoted(kSignificantTitle));
    gp << baseline_line(base_value) << "\n";
  }
  gp << "unset multiplot";
  return figure.draw(gnuplot, gp.str());
}

// Per model: the mean relative accuracy drop per block of the language and of the reasoning benchmarks.
std::string accuracy_drop_figure(const ModelReport& model, Figure& figure, const std::string& gnuplot) {
  if (std::none_of(model.datasets.begin(), model.datasets.end(), [](const ReportDataset& d) { return d.is_benchmark(); }))
    throw Skip{"model '" + model.name + "' has no benchmark"};
  if (!baseline_of(model)) throw Skip{"model '" + model.name + "' has no baseline to measure drops against"};
  std::ostringstream plots;
  bool marked = false;
  for (const char* kind : kKinds) {
    std::ostringstream rows;
    rows << "# block language_drop_percent se significant reasoning_drop_percent se significant\n";
    std::vector<double> language, reasoning;
    for (const InterventionSummary* s : single_blocks(model, kind)) {
      rows << s->first_block << " " << number(100 * s->language_drop) << " " << number(100 * s->language_drop_se) << " "
           << s->language_significant << " " << number(100 * s->reasoning_drop) << " " << number(100 * s->reasoning_drop_se) << " "
           << s->reasoning_significant << "\n";
      language.push_back(s->language_drop), reasoning.push_back(s->reasoning_drop);
    }
    const std::string file = figure.data(std::string("_") + kind, rows.str());
    const char* tag_colour[] = {"#1f77b4", "#ff7f0e"};
    const std::vector<double>* values[] = {&language, &reasoning};
    const char* tags[] = {"language", "reasoning"};
    for (int t = 0; t < 2; ++t)
      if (any_value(*values[t])) {
        const int value = 2 + 3 * t;
        plots << (plots.tellp() > 0 ? ", " : "") << file << " using 1:" << value << ":" << value + 1 << " with yerrorlines lw 2 pt "
              << 7 + 2 * t << " dt " << (std::string(kind) == "zero_attention" ? 2 : 1) << " lc rgb '" << tag_colour[t] << "' title "
              << quoted(std::string(tags[t]) + ", " + kind_label(kind)) << ", " << file << " using 1:($" << value + 2 << " > 0 ? $"
              << value << " : NaN) with points pt 6 ps 2.5 lw 2 lc rgb 'black' " << (marked ? "notitle" : "title " + quoted(
                 "a benchmark's drop significant (Holm, α = 0.05)"));
        marked = true;
      }
  }
  if (plots.tellp() == 0)
    throw Skip{"no single-block intervention of model '" + model.name + "' has a relative accuracy drop yet (results, and a "
               "benchmark baseline clear of noise, are needed)"};
  std::ostringstream gp;
  gp << kCommon << "set title " << quoted("Model " + model.name + ": relative accuracy drop per block, language vs reasoning benchmarks (bars: ± 1 SE)")
     << "\nset xlabel 'block'\nset ylabel 'accuracy drop vs baseline (%)'\nset xrange [-0.5:" << model.layers - 0.5
     << "]\nset xtics 1\nset xzeroaxis lt -1\nset key outside right top\nplot " << plots.str();
  return figure.draw(gnuplot, gp.str());
}

// Every model: the relative accuracy drop by relative depth (block b of L at (b + 0.5) / L), so that models of
// different depth line up; a panel per kind.
std::string depth_figure(const ReportData& data, Figure& figure, const std::string& gnuplot) {
  std::ostringstream panels;
  int drawn_panels = 0;
  for (const char* kind : kKinds) {
    std::ostringstream plots;
    size_t index = 0;
    for (const ModelReport& model : data.models) {
      std::ostringstream rows;
      rows << "# relative_depth language_drop_percent se reasoning_drop_percent se block\n";
      std::vector<double> language, reasoning;
      for (const InterventionSummary* s : single_blocks(model, kind)) {
        rows << number((s->first_block + 0.5) / model.layers) << " " << number(100 * s->language_drop) << " "
             << number(100 * s->language_drop_se) << " " << number(100 * s->reasoning_drop) << " "
             << number(100 * s->reasoning_drop_se) << " " << s->first_block << "\n";
        language.push_back(s->language_drop), reasoning.push_back(s->reasoning_drop);
      }
      const std::string file = figure.data("_" + file_safe(model.name) + "_" + kind, rows.str());
      const std::vector<double>* values[] = {&language, &reasoning};
      const char* tags[] = {"language", "reasoning"};
      for (int t = 0; t < 2; ++t)
        if (any_value(*values[t]))
          plots << (plots.tellp() > 0 ? ", " : "") << file << " using 1:" << 2 + 2 * t << ":" << 3 + 2 * t
                << " with yerrorlines lw 2 pt " << 7 + 2 * t << " dt " << 1 + t << " lc rgb '" << colour(index) << "' title "
                << quoted(model.name + " (" + std::to_string(model.layers) + " blocks): " + tags[t]);
      ++index;
    }
    if (plots.tellp() == 0) continue;
    ++drawn_panels;
    panels << "set title " << quoted(std::string("one block's ") + kind_label(kind)) << "\nplot " << plots.str() << "\n";
  }
  if (drawn_panels == 0) throw Skip{"no model has a relative accuracy drop for a single block yet"};
  std::ostringstream gp;
  gp << kCommon << "set multiplot layout " << drawn_panels << ",1 title "
     << quoted("Relative accuracy drop by relative depth of the block ((block + 0.5) / blocks), language vs reasoning (bars: ± 1 SE)") << "\n"
     << "set xlabel 'relative depth'\nset ylabel 'accuracy drop vs baseline (%)'\nset xrange [0:1]\nset xzeroaxis lt -1\n"
     << "set key outside right top\n" << panels.str() << "unset multiplot";
  return figure.draw(gnuplot, gp.str());
}

// Every model: EM on its memorized set against its mean benchmark accuracy, a point per intervention (filled: one
// block, open: several; circles short-circuit, triangles zeroed attention), each model's baseline a large star of
// its colour: left of it is accuracy lost, below it memorization removed.
std::string memorization_vs_accuracy_figure(const ReportData& data, Figure& figure, const std::string& gnuplot) {
  std::ostringstream plots;
  size_t index = 0;
  for (const ModelReport& model : data.models) {
    std::ostringstream rows[4];  // single short-circuit, single zeroed, several short-circuit, several other
    bool any[4] = {false, false, false, false};
    for (const InterventionSummary& s : model.summaries) {
      if (s.first_block < 0 || std::isnan(s.exact_match) || std::isnan(s.mean_accuracy)) continue;
      const int group = s.single_block ? (s.kind == "zero_attention" ? 1 : 0) : (s.kind == "short_circuit" ? 2 : 3);
      // Labelled by block where one block changed, by name where several did.
      rows[group] << number(s.mean_accuracy) << " " << number(s.exact_match) << " "
                  << data_text(s.single_block ? std::to_string(s.first_block) : s.intervention) << " "
                  << number(std::isnan(s.mean_accuracy_se) ? 0 : s.mean_accuracy_se) << " "
                  << number(std::isnan(s.exact_match_se) ? 0 : s.exact_match_se) << "\n";
      any[group] = true;
    }
    const InterventionSummary* base = baseline_of(model);
    const bool has_base = base && !std::isnan(base->exact_match) && !std::isnan(base->mean_accuracy);
    if (!has_base && !any[0] && !any[1] && !any[2] && !any[3]) continue;
    const char* groups[] = {"one block short-circuited", "one block zeroed", "several blocks short-circuited", "several blocks, other"};
    const int points[] = {7, 9, 6, 8};
    for (int g = 0; g < 4; ++g)
      if (any[g]) {
        const std::string file = figure.data("_" + file_safe(model.name) + "_" + std::to_string(g), rows[g].str());
        plots << (plots.tellp() > 0 ? ", " : "") << file << " using 1:2:4:5 with xyerrorbars pt " << points[g] << " ps 1.5 lc rgb '"
              << colour(index) << "' title " << quoted(model.name + ": " + groups[g]) << ", " << file
              << " using 1:2:3 with labels offset char 0.8, char 0.6 left font ',9' tc rgb '" << colour(index) << "' notitle";
      }
    if (has_base)
      plots << (plots.tellp() > 0 ? ", " : "") << "'+' using (" << number(base->mean_accuracy) << "):(" << number(base->exact_match)
            << "):(" << number(std::isnan(base->mean_accuracy_se) ? 0 : base->mean_accuracy_se) << "):("
            << number(std::isnan(base->exact_match_se) ? 0 : base->exact_match_se)
            << ") every ::0::0 with xyerrorbars pt 3 ps 4 lw 3 lc rgb '" << colour(index) << "' title " << quoted(model.name + ": baseline");
    ++index;
  }
  if (plots.tellp() == 0) throw Skip{"no model has both EM on a memorized set and benchmark accuracy yet"};
  std::ostringstream gp;
  gp << kCommon << "set title 'Memorization (EM on the memorized set) vs mean benchmark accuracy, a point per intervention (bars: ± 1 SE)'\n"
     << "set xlabel 'mean benchmark accuracy (acc): left of a baseline = accuracy lost'\n"
     << "set ylabel 'exact match: below a baseline = memorization removed'\nset yrange [-0.05:1.05]\nset xrange [0:1.05]\n"
     << "set key outside right top\nset samples 2\nplot " << plots.str();
  return figure.draw(gnuplot, gp.str());
}

// Per model: interventions on several blocks (ranges, the last k, combinations): EM and mean accuracy as bars, the
// baseline's as dashed lines.
std::string multi_block_figure(const ModelReport& model, Figure& figure, const std::string& gnuplot) {
  std::ostringstream rows;
  rows << "# index EM mean_accuracy intervention EM_se mean_accuracy_se\n";
  int count = 0;
  std::vector<double> values;
  auto or_zero = [](double v) { return std::isnan(v) ? 0.0 : v; };
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block >= 0 && !s.single_block) {
      rows << count++ << " " << number(s.exact_match) << " " << number(s.mean_accuracy) << " " << data_text(s.intervention) << " "
           << number(or_zero(s.exact_match_se)) << " " << number(or_zero(s.mean_accuracy_se)) << "\n";
      values.push_back(s.exact_match), values.push_back(s.mean_accuracy);
    }
  if (count == 0) throw Skip{"model '" + model.name + "' has no intervention on several blocks"};
  if (!any_value(values)) throw Skip{"no intervention of model '" + model.name + "' on several blocks has results yet"};
  const std::string file = figure.data("", rows.str());
  const InterventionSummary* base = baseline_of(model);
  std::ostringstream gp;
  gp << kCommon << "set title " << quoted("Model " + model.name + ": interventions on several blocks (bars: ± 1 SE; dashed: baseline)")
     << "\nset style data histograms\nset style histogram errorbars gap 1 lw 1.5\nset errorbars lc rgb 'black'\nset style fill solid 0.8 noborder\nset boxwidth 0.9\n"
     << "set yrange [0:1.05]\nset xtics rotate by -30 left\nset key outside right top\nset ylabel 'EM (memorized set), mean acc'\n"
     << "plot " << file << " using 2:5:xtic(4) title 'EM' lc rgb '#1f77b4', '' using 3:6 title 'mean accuracy' lc rgb '#2ca02c'";
  if (base && !std::isnan(base->exact_match))
    gp << ", " << number(base->exact_match) << " with lines dt 2 lw 2 lc rgb '#1f77b4' title 'EM, baseline'";
  if (base && !std::isnan(base->mean_accuracy))
    gp << ", " << number(base->mean_accuracy) << " with lines dt 2 lw 2 lc rgb '#2ca02c' title 'mean accuracy, baseline'";
  return figure.draw(gnuplot, gp.str());
}

// Per model and divergence set: the residual stream's relative change and the logit lens's KL after each layer, an
// intervened block per row; a pair of panels per kind.
std::string divergence_figure(const ModelReport& model, const ReportDataset& dataset, Figure& figure, const std::string& gnuplot) {
  const char* metrics[] = {"relative_change", "kl"};
  const char* titles[] = {"relative change ||h - h'|| / ||h||", "KL(p || p') of the logit lens"};
  std::ostringstream panels;
  int kinds = 0;
  for (const char* kind : kKinds) {
    std::ostringstream rows;
    rows << "# layer block relative_change kl\n";
    double largest[2] = {0, 0};
    for (const InterventionSummary* s : single_blocks(model, kind))
      for (int layer = 0; layer < model.layers; ++layer) {
        double values[2];
        for (int m = 0; m < 2; ++m) values[m] = model.metric(dataset.name, s->intervention, divergence_metric_name(metrics[m], layer));
        if (std::isnan(values[0])) continue;
        for (int m = 0; m < 2; ++m) largest[m] = std::max(largest[m], std::isnan(values[m]) ? 0 : values[m]);
        rows << layer << " " << s->first_block << " " << number(values[0]) << " " << number(values[1]) << "\n";
      }
    if (largest[0] == 0 && largest[1] == 0) continue;
    ++kinds;
    const std::string file = figure.data(std::string("_") + kind, rows.str());
    for (int m = 0; m < 2; ++m)
      panels << "set title " << quoted(std::string(titles[m]) + ", one block's " + kind_label(kind)) << "\nset cbrange [0:"
             << number(largest[m] > 0 ? largest[m] : 1) << "]\nplot " << file << " using 1:2:(0.5):(0.5):" << 3 + m
             << " with boxxyerror lc palette notitle" << (model.layers <= 16 ? ", " + file + " using 1:2:(sprintf('%.2f', $" +
                                                                                  std::to_string(3 + m) + ")) with labels font ',8' notitle"
                                                                            : std::string())
             << "\n";
  }
  if (kinds == 0) throw Skip{"no single-block intervention of model '" + model.name + "' has results on '" + dataset.name + "' yet"};
  std::ostringstream gp;
  gp << "set multiplot layout " << kinds << ",2 title " << quoted("Model " + model.name + " on " + dataset.name +
                                                                   ": how far an intervened block's change reaches, layer by layer")
     << "\nset xlabel 'layer'\nset ylabel 'intervened block'\nset xrange [-0.5:" << model.layers - 0.5 << "]\nset yrange [-0.5:"
     << model.layers - 0.5 << "]\nset xtics 1\nset ytics 1\nset palette defined (0 '#fff5eb', 0.5 '#fd8d3c', 1 '#7f2704')\n"
     << "set style fill solid 1.0 noborder\n" << panels.str() << "unset multiplot";
  return figure.draw(gnuplot, gp.str());
}

}  // namespace

std::vector<FigureOutcome> write_figures(const ReportData& data, const std::string& out, const std::string& gnuplot) {
  struct Planned {
    std::string name;
    std::function<std::string(Figure&, const std::string&)> draw;
    int width, height;
  };
  std::vector<Planned> planned;
  for (const ModelReport& model : data.models) {
    const std::string m = file_safe(model.name);
    planned.push_back({"fig1_memorization_" + m, [&](Figure& f, const std::string& g) { return memorization_figure(model, f, g); }, 1000, 900});
    planned.push_back({"fig2_accuracy_drop_" + m, [&](Figure& f, const std::string& g) { return accuracy_drop_figure(model, f, g); }, 1000, 550});
    planned.push_back({"fig5_multi_block_" + m, [&](Figure& f, const std::string& g) { return multi_block_figure(model, f, g); }, 1000, 600});
    for (const ReportDataset& d : model.datasets)
      if (d.role == "divergence")
        planned.push_back({"fig6_divergence_" + m + "_" + file_safe(d.name),
                           [&model, &d](Figure& f, const std::string& g) { return divergence_figure(model, d, f, g); }, 1100, 550});
  }
  planned.push_back({"fig3_accuracy_drop_by_depth", [&](Figure& f, const std::string& g) { return depth_figure(data, f, g); }, 1000, 800});
  planned.push_back({"fig4_em_vs_accuracy", [&](Figure& f, const std::string& g) { return memorization_vs_accuracy_figure(data, f, g); }, 1100, 700});
  std::stable_sort(planned.begin(), planned.end(), [](const Planned& a, const Planned& b) { return a.name < b.name; });

  std::vector<FigureOutcome> outcomes;
  const std::string executable = find_executable(gnuplot);
  if (executable.empty()) {
    const std::string why = "gnuplot not found (looked for '" + gnuplot + "'" + (gnuplot.find('/') == std::string::npos ? " on PATH" : "") +
                            "); install it (Debian: apt-get install gnuplot-nox; bash .ci/setup does) or pass --gnuplot PATH";
    for (const Planned& p : planned) outcomes.push_back({p.name, "", why});
    return outcomes;
  }
  std::filesystem::create_directories(out + "/gnuplot");
  for (const Planned& p : planned) {
    Figure figure(out, p.name, p.width, p.height);
    FigureOutcome outcome{p.name, "", ""};
    try {
      outcome.png = p.draw(figure, executable);
    } catch (const Skip& skip) {
      outcome.skipped = skip.reason;
    } catch (const Error& e) {
      outcome.skipped = e.what();
    }
    outcomes.push_back(outcome);
  }
  return outcomes;
}

}  // namespace memsweep
