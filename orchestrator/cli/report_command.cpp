// memsweep report: a study's store as report.md, CSV files and figures (orchestrator/report/report.h).
#include <cstdio>
#include <filesystem>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/report/report.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace po = boost::program_options;

namespace memsweep {

int report_command(const Arguments& raw) {
  const CommandSpec spec{"report", "STORE.sqlite --out DIR [--gnuplot PATH] [--no-figures] [--examples]",
                         "Writes DIR/report.md (per model: a table per intervention with every dataset's metrics and their\n"
                         "relative change against the baseline, an overview, the blocks that remove the most memorization per\n"
                         "unit of accuracy lost, the memorized rows each intervention flips and those that survive all, what is\n"
                         "missing if the study is unfinished, provenance), CSV files (metrics, interventions, divergence; with\n"
                         "--examples every per-example number too) and figures as PNG and SVG drawn by gnuplot: per model\n"
                         "memorization per block against the baseline, accuracy drop per block (language vs reasoning),\n"
                         "multi-block interventions, divergence heatmaps; across models accuracy drop by relative depth and\n"
                         "memorization vs accuracy. Datasets' roles (memorized, control, benchmark, divergence) say what is\n"
                         "what. A figure without its data (mid-run, failed units, no benchmarks...) or without gnuplot is\n"
                         "skipped and report.md says why; the command exits 0 on any readable store. Safe while a study runs\n"
                         "(the store is opened read-only)."};
  std::string path, out, gnuplot = "gnuplot";
  bool no_figures = false, examples = false;
  po::options_description options("options");
  options.add_options()("db", po::value(&path)->required(), "the store")("out", po::value(&out)->required(),
                                                                         "the report's folder (created)")(
      "gnuplot", po::value(&gnuplot)->default_value("gnuplot"), "the gnuplot executable (a name looked up on PATH, or a path)")(
      "no-figures", po::bool_switch(&no_figures), "only report.md and the CSV files")(
      "examples", po::bool_switch(&examples), "also examples.csv: every per-example number (large for a paper-scale study)");
  po::positional_options_description positional;
  positional.add("db", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  const ReportData data = read_report_data(path);
  std::filesystem::create_directories(out);
  std::vector<FigureOutcome> figures;
  if (!no_figures) figures = write_figures(data, out, gnuplot);
  write_report_files(data, out, figures, examples);
  size_t drawn = 0;
  for (const FigureOutcome& f : figures) {
    drawn += !f.png.empty();
    if (f.png.empty()) log_warning("figure " + f.name + " skipped: " + f.skipped);
  }
  std::printf("%s", summary_table(data).c_str());
  std::printf("\nreport: %s/report.md (CSV files beside it, %zu figures as PNG and SVG%s)\n", out.c_str(), drawn,
              figures.size() > drawn ? (", " + std::to_string(figures.size() - drawn) + " skipped: report.md says why").c_str()
                                     : no_figures ? ": --no-figures" : "");
  return 0;
}

}  // namespace memsweep
