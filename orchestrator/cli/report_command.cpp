// memsweep report: a study's store as report.md, CSV files and figures (orchestrator/report/report.h).
#include <cstdio>
#include <filesystem>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/report/report.h"
#include "worker/base/error.h"

namespace po = boost::program_options;

namespace memsweep {

int report_command(const Arguments& raw) {
  const CommandSpec spec{"report", "STORE.sqlite --out DIR [--gnuplot PATH] [--no-figures]",
                         "Writes DIR/report.md (per model: a table per intervention with every dataset's metrics and their\n"
                         "relative change against the baseline, an overview, the blocks that remove the most memorization per\n"
                         "unit of accuracy lost, what is missing if the study is unfinished, provenance), CSV files (metrics,\n"
                         "interventions, divergence, examples) and figures as PNG and SVG drawn by gnuplot: per-block\n"
                         "memorization and accuracy, EM vs accuracy of every model, accuracy drop of language vs reasoning\n"
                         "benchmarks, divergence heatmaps. Without gnuplot, report.md and the CSV files are still written and\n"
                         "the command fails naming it. Safe while a study runs (the store is opened read-only)."};
  std::string path, out, gnuplot = "gnuplot";
  bool no_figures = false;
  po::options_description options("options");
  options.add_options()("db", po::value(&path)->required(), "the store")("out", po::value(&out)->required(),
                                                                         "the report's folder (created)")(
      "gnuplot", po::value(&gnuplot)->default_value("gnuplot"), "the gnuplot executable (a name looked up on PATH, or a path)")(
      "no-figures", po::bool_switch(&no_figures), "only report.md and the CSV files");
  po::positional_options_description positional;
  positional.add("db", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  const ReportData data = read_report_data(path);
  std::filesystem::create_directories(out);
  std::vector<std::string> figures;
  std::string figures_error = no_figures ? "--no-figures was given." : "";
  if (!no_figures) {
    try {
      figures = write_figures(data, out, gnuplot);
    } catch (const Error& e) {
      figures_error = e.what();
    }
  }
  write_report_files(data, out, figures, figures_error);
  std::printf("%s", summary_table(data).c_str());
  std::printf("\nreport: %s/report.md (CSV files beside it", out.c_str());
  if (!figures.empty()) std::printf(", %zu figures as PNG and SVG", figures.size());
  std::printf(")\n");
  if (!no_figures && figures.empty()) throw Error("report.md and the CSV files are written, the figures are not: " + figures_error);
  return 0;
}

}  // namespace memsweep
