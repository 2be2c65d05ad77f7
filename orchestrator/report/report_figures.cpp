// The report's figures, drawn by gnuplot (pngcairo and svg terminals) from data files and scripts this file
// writes to OUT/gnuplot/, so a reader can redraw or restyle one with `gnuplot OUT/gnuplot/NAME.gp`.
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

void run_gnuplot(const std::string& gnuplot, const std::string& script) {
  std::vector<char*> argv = {const_cast<char*>(gnuplot.c_str()), const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, gnuplot.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
    throw Error("cannot start " + gnuplot + " for " + script);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(gnuplot + " failed on " + script + " (its messages are above); the data and script are kept there");
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

const std::string kCommon = "set grid lc rgb '#dddddd'\nset key outside right top box opaque\nset border lw 1\n";

std::vector<const InterventionSummary*> single_blocks(const ModelReport& model) {
  std::vector<const InterventionSummary*> blocks;
  for (const InterventionSummary& s : model.summaries)
    if (s.single_block) blocks.push_back(&s);
  return blocks;
}

const InterventionSummary* baseline_of(const ModelReport& model) {
  for (const InterventionSummary& s : model.summaries)
    if (s.first_block < 0) return &s;
  return nullptr;
}

// Figure 1 (per model): per short-circuited block, memorization (EM, TA, CE) above and each benchmark's accuracy
// below, the baseline's values as dashed lines of the same colour.
std::string per_block_figure(const ModelReport& model, const std::string& out, const std::string& gnuplot) {
  Figure figure(out, "fig1_per_block_" + file_safe(model.name), 1000, 800);
  std::vector<const ReportDataset*> benchmarks;
  for (const ReportDataset& d : model.datasets)
    if (d.is_benchmark()) benchmarks.push_back(&d);
  std::ostringstream rows;
  rows << "# block EM TA CE";
  for (const ReportDataset* d : benchmarks) rows << " acc:" << d->name;
  rows << "\n";
  for (const InterventionSummary* s : single_blocks(model)) {
    rows << s->first_block << " " << number(s->exact_match) << " " << number(s->token_accuracy) << " " << number(s->completion_entropy);
    for (const ReportDataset* d : benchmarks) rows << " " << number(model.metric(d->name, s->intervention, "acc"));
    rows << "\n";
  }
  const std::string data = figure.data("", rows.str());
  const InterventionSummary* base = baseline_of(model);
  auto base_line = [&](double value, const char* c, const std::string& axes = "x1y1") {
    return base && !std::isnan(value) ? ", " + number(value) + " axes " + axes + " with lines dt 2 lw 1.5 lc rgb '" + c + "' notitle" : "";
  };
  std::ostringstream gp;
  gp << kCommon << "set multiplot layout 2,1 title " << quoted("Model " + model.name + ": attention of one block short-circuited (dashed: baseline)")
     << "\nset xrange [-0.5:" << model.layers - 0.5 << "]\nset xtics 1\nset xlabel 'short-circuited block'\n";
  gp << "set title " << quoted("memorization on " + (model.memorized_set.empty() ? std::string("(no memorized set)") : model.memorized_set))
     << "\nset ylabel 'EM, TA'\nset yrange [0:1.05]\nset y2label 'CE (nats, summed over the suffix)'\nset y2tics\nset ytics nomirror\n"
     << "plot " << data << " using 1:2 with linespoints lw 2 pt 7 lc rgb '" << colour(0) << "' title 'EM', " << data
     << " using 1:3 with linespoints lw 2 pt 5 lc rgb '" << colour(1) << "' title 'TA', " << data
     << " using 1:4 axes x1y2 with linespoints lw 2 pt 9 lc rgb '" << colour(2) << "' title 'CE (right axis)'"
     << base_line(base ? base->exact_match : NAN, colour(0)) << base_line(base ? base->token_accuracy : NAN, colour(1))
     << base_line(base ? base->completion_entropy : NAN, colour(2), "x1y2") << "\n";
  gp << "unset y2label\nunset y2tics\nset ytics mirror\nset title 'benchmark accuracy (acc)'\nset ylabel 'accuracy'\nset yrange [0:1.05]\n";
  if (benchmarks.empty()) {
    gp << "set label 1 'no benchmarks in this study' at graph 0.5, graph 0.5 center\nplot NaN notitle\n";
  } else {
    gp << "plot ";
    for (size_t i = 0; i < benchmarks.size(); ++i)
      gp << (i ? ", " : "") << data << " using 1:" << 5 + i << " with linespoints lw 2 pt " << 7 + i << " lc rgb '" << colour(i + 3)
         << "' title " << quoted(benchmarks[i]->name + " (" + benchmarks[i]->tag + ")")
         << base_line(model.metric(benchmarks[i]->name, "baseline", "acc"), colour(i + 3));
    gp << "\n";
  }
  gp << "unset multiplot";
  return figure.draw(gnuplot, gp.str());
}

// Figure 2 (every model): EM against mean accuracy, one point per short-circuited block coloured by relative
// depth, one point shape per model, the baseline as a black star.
std::string scale_figure(const ReportData& data, const std::string& out, const std::string& gnuplot) {
  Figure figure(out, "fig2_em_vs_accuracy", 1000, 700);
  std::ostringstream plots;
  size_t index = 0;
  for (const ModelReport& model : data.models) {
    std::ostringstream rows;
    rows << "# mean_accuracy EM relative_depth block\n";
    for (const InterventionSummary* s : single_blocks(model))
      rows << number(s->mean_accuracy) << " " << number(s->exact_match) << " "
           << number(model.layers > 1 ? double(s->first_block) / (model.layers - 1) : 0.0) << " " << s->first_block << "\n";
    const std::string file = figure.data("_" + file_safe(model.name), rows.str());
    plots << (index ? ", " : "") << file << " using 1:2:3 with points pt " << 7 + 2 * index << " ps 2 lc palette title "
          << quoted(model.name + " (" + std::to_string(model.layers) + " blocks)") << ", " << file
          << " using 1:2:(sprintf('%d', $4)) with labels offset char 1.2, char 0.6 tc rgb '#444444' notitle";
    if (const InterventionSummary* base = baseline_of(model))
      plots << ", '+' using (" << number(base->mean_accuracy) << "):(" << number(base->exact_match)
            << ") every ::0::0 with points pt 3 ps 3 lw 2 lc rgb 'black' title " << quoted(model.name + " baseline");
    ++index;
  }
  std::ostringstream gp;
  gp << kCommon << "set title 'Memorization (EM on the memorized set) vs mean benchmark accuracy, one point per short-circuited block'\n"
     << "set xlabel 'mean benchmark accuracy (acc)'\nset ylabel 'exact match'\nset yrange [-0.05:1.05]\nset xrange [0:1.05]\n"
     << "set palette defined (0 '#2c7bb6', 0.5 '#ffffbf', 1 '#d7191c')\nset cbrange [0:1]\n"
     << "set cblabel 'relative depth (block / (blocks - 1))'\nset key inside left top box opaque\nset samples 2\n"
     << "plot " << plots.str();
  return figure.draw(gnuplot, gp.str());
}

// Figure 3 (every model): mean relative accuracy drop per short-circuited block, language vs reasoning benchmarks.
std::string tag_figure(const ReportData& data, const std::string& out, const std::string& gnuplot) {
  Figure figure(out, "fig3_accuracy_drop_by_tag", 1000, 600);
  std::ostringstream plots;
  size_t index = 0;
  int deepest = 1;
  for (const ModelReport& model : data.models) {
    deepest = std::max(deepest, model.layers);
    std::ostringstream rows;
    rows << "# block language_drop_percent reasoning_drop_percent\n";
    for (const InterventionSummary* s : single_blocks(model))
      rows << s->first_block << " " << number(100 * s->language_drop) << " " << number(100 * s->reasoning_drop) << "\n";
    const std::string file = figure.data("_" + file_safe(model.name), rows.str());
    bool has[2] = {false, false};
    for (const ReportDataset& d : model.datasets) has[0] |= d.tag == "language", has[1] |= d.tag == "reasoning";
    const char* tags[] = {"language", "reasoning"};
    for (int t = 0; t < 2; ++t)
      if (has[t])
        plots << (plots.tellp() > 0 ? ", " : "") << file << " using 1:" << 2 + t << " with linespoints lw 2 pt " << 7 + 2 * t
              << " dt " << 1 + int(index) << " lc rgb '" << colour(t) << "' title " << quoted(model.name + ": " + tags[t]);
    ++index;
  }
  std::ostringstream gp;
  gp << kCommon << "set title 'Relative accuracy drop per short-circuited block: language vs reasoning benchmarks'\n"
     << "set xlabel 'short-circuited block'\nset ylabel 'accuracy drop vs baseline (%, mean over the tag''s benchmarks)'\n"
     << "set xrange [-0.5:" << deepest - 0.5 << "]\nset xtics 1\nset xzeroaxis lt -1\n";
  if (plots.tellp() == 0) gp << "set label 1 'no benchmarks in this study' at graph 0.5, graph 0.5 center\nplot NaN notitle";
  else gp << "plot " << plots.str();
  return figure.draw(gnuplot, gp.str());
}

// Figure 4 (per model and divergence set): relative change of the residual stream, intervened block x layer.
std::string divergence_figure(const ModelReport& model, const ReportDataset& dataset, const std::string& out,
                              const std::string& gnuplot) {
  Figure figure(out, "fig4_divergence_" + file_safe(model.name) + "_" + file_safe(dataset.name), 900, 700);
  std::ostringstream rows;
  rows << "# layer block relative_change kl\n";
  double largest = 0;
  for (const InterventionSummary* s : single_blocks(model))
    for (int layer = 0; layer < model.layers; ++layer) {
      const double change = model.metric(dataset.name, s->intervention, divergence_metric_name("relative_change", layer));
      if (std::isnan(change)) continue;
      largest = std::max(largest, change);
      rows << layer << " " << s->first_block << " " << number(change) << " "
           << number(model.metric(dataset.name, s->intervention, divergence_metric_name("kl", layer))) << "\n";
    }
  const std::string file = figure.data("", rows.str());
  std::ostringstream gp;
  gp << "set title " << quoted("Model " + model.name + " on " + dataset.name +
                               ": relative change of the residual stream after each layer, ||h - h'|| / ||h||")
     << "\nset xlabel 'layer'\nset ylabel 'short-circuited block'\nset xrange [-0.5:" << model.layers - 0.5 << "]\nset yrange [-0.5:"
     << model.layers - 0.5 << "]\nset xtics 1\nset ytics 1\nset size ratio -1\n"
     << "set palette defined (0 '#fff5eb', 0.5 '#fd8d3c', 1 '#7f2704')\nset cbrange [0:" << number(largest > 0 ? largest : 1) << "]\n"
     << "set cblabel 'relative change'\nset style fill solid 1.0 noborder\nunset key\n"
     << "plot " << file << " using 1:2:(0.5):(0.5):3 with boxxyerror lc palette, " << file
     << " using 1:2:(sprintf('%.2f', $3)):($3 > 0.6 * " << number(largest) << " ? 0xffffff : 0x000000) with labels tc rgb variable";
  return figure.draw(gnuplot, gp.str());
}

}  // namespace

std::vector<std::string> write_figures(const ReportData& data, const std::string& out, const std::string& gnuplot) {
  const std::string executable = find_executable(gnuplot);
  if (executable.empty())
    throw Error("gnuplot not found (looked for '" + gnuplot + "'" + (gnuplot.find('/') == std::string::npos ? " on PATH" : "") +
                "): the figures need it; install it (Debian: apt-get install gnuplot-nox; bash .ci/setup does) or pass "
                "--gnuplot PATH");
  std::filesystem::create_directories(out + "/gnuplot");
  std::vector<std::string> images;
  for (const ModelReport& model : data.models) images.push_back(per_block_figure(model, out, executable));
  images.push_back(scale_figure(data, out, executable));
  images.push_back(tag_figure(data, out, executable));
  for (const ModelReport& model : data.models)
    for (const ReportDataset& d : model.datasets)
      if (d.kind == "divergence") images.push_back(divergence_figure(model, d, out, executable));
  return images;
}

}  // namespace memsweep
