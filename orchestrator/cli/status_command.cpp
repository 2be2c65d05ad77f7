// memsweep status: progress of a study's store, while it runs or after (the store is opened read-only).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/scheduler/progress.h"
#include "orchestrator/store/lease.h"
#include "orchestrator/store/summary.h"

namespace po = boost::program_options;

namespace memsweep {

namespace {

// One table per model and dataset: a row per intervention, a column per metric any of its rows has (the
// divergence kind reports per-layer metrics only for the layers an intervention changes), "value ± standard error"
// where the metric has one, and under each intervention its difference from the baseline on the same examples with
// the 95 % interval, "*" where it stays significant after Holm–Bonferroni over the dataset's interventions.
void print_metrics(const std::string& path) {
  const std::vector<InterventionTotals> rows = read_intervention_totals(path);
  const StoreStatistics statistics = read_statistics(path);
  auto number = [](double v, const char* pattern = "%.4g") {
    char text[32];
    std::snprintf(text, sizeof text, pattern, v);
    return std::string(text);
  };
  auto cell = [](const std::string& text) {  // right-aligned in 26 characters (code points, not bytes: "±")
    int width = 0;
    for (unsigned char c : text) width += (c & 0xC0) != 0x80;
    std::printf(" %*s%s", std::max(0, 26 - width), "", text.c_str());
  };
  for (size_t first = 0; first < rows.size();) {
    size_t last = first;
    while (last < rows.size() && rows[last].model == rows[first].model && rows[last].dataset == rows[first].dataset) ++last;
    std::set<std::string> names;
    for (size_t i = first; i < last; ++i)
      for (const auto& [name, value] : rows[i].metrics) names.insert(name);  // the numbers the report prints too
    std::printf("\n%s on %s (%s):\n%-36s %11s", rows[first].model.c_str(), rows[first].dataset.c_str(), rows[first].kind.c_str(),
                "intervention", "units");
    for (const std::string& name : names) cell(name);
    std::printf("\n");
    for (size_t i = first; i < last; ++i) {
      const auto found_statistics = statistics.find({rows[i].model, rows[i].dataset, rows[i].intervention});
      const InterventionStatistics none, &s = found_statistics == statistics.end() ? none : found_statistics->second;
      const std::string units = std::to_string(rows[i].units_done) + "/" + std::to_string(rows[i].units);
      std::printf("%-36s %11s", rows[i].intervention.c_str(), units.c_str());
      for (const std::string& name : names) {
        const auto value = rows[i].metrics.find(name);
        const auto error = s.stderrs.find(name + "_stderr");
        std::string text = value == rows[i].metrics.end() ? "" : number(value->second, "%.6g");
        if (!text.empty() && error != s.stderrs.end() && !std::isnan(error->second)) text += " ± " + number(error->second, "%.2g");
        cell(text);
      }
      std::printf("\n");
      if (s.paired.empty()) continue;
      std::printf("%-36s %11s", "  − baseline [95% CI]", "");
      for (const std::string& name : names) {
        const auto p = s.paired.find(name);
        std::string text;
        if (p != s.paired.end())
          text = (p->second.difference > 0 ? "+" : "") + number(p->second.difference) + " [" + number(p->second.ci_low) + ", " +
                 number(p->second.ci_high) + "]" + (p->second.significant ? "*" : " ");
        cell(text);
      }
      std::printf("\n");
    }
    first = last;
  }
  if (!statistics.empty())
    std::printf("\n± : standard error of the mean over examples (perplexity: lm-evaluation-harness's bootstrap); − baseline: the "
                "mean paired difference on the same examples, 95 %% t-interval; *: significant at α = 0.05 after Holm–Bonferroni "
                "over the dataset's interventions (exact McNemar for EM, acc, acc_norm; paired t-test otherwise)\n");
}

}  // namespace

int status_command(const Arguments& raw) {
  const CommandSpec spec{"status", "STORE.sqlite [--failures N] [--metrics] [--exit-unfinished]",
                         "Progress per model and dataset (units done, failed, running, pending), the latest failures with\n"
                         "their errors, the rate of the latest run and the time left at that rate. Safe while a study runs.\n"
                         "--exit-unfinished: exit 3 while units are pending or running (batch scripts decide to requeue with it)."};
  std::string path;
  int failures_shown = 10;
  bool metrics = false, exit_unfinished = false;
  po::options_description options("options");
  options.add_options()("db", po::value(&path)->required(), "the store")("failures", po::value(&failures_shown)->default_value(10),
                                                                         "how many failed attempts to list")(
      "metrics", po::bool_switch(&metrics), "also print each dataset's metrics per intervention (from the done units)")(
      "exit-unfinished", po::bool_switch(&exit_unfinished), "exit 3 when units are pending or running");
  po::positional_options_description positional;
  positional.add("db", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  const StoreSummary s = read_store_summary(path);
  std::printf("study %s (sha256:%s), store schema %d, %lld run(s)\n\n", s.study_name.c_str(), s.study_hash.substr(0, 16).c_str(),
              s.schema_version, (long long)s.runs);
  std::printf("%-20s %-20s %7s %7s %7s %7s %7s %7s\n", "model", "dataset", "units", "done", "failed", "running", "pending", "% done");
  GroupProgress total;
  for (const GroupProgress& g : s.groups) {
    std::printf("%-20s %-20s %7lld %7lld %7lld %7lld %7lld %6.1f%%\n", g.model.c_str(), g.dataset.c_str(), (long long)g.total,
                (long long)g.done, (long long)g.failed, (long long)g.running, (long long)g.pending,
                g.total ? 100.0 * double(g.done) / double(g.total) : 100.0);
    total.total += g.total, total.done += g.done, total.failed += g.failed, total.running += g.running, total.pending += g.pending;
  }
  std::printf("%-20s %-20s %7lld %7lld %7lld %7lld %7lld %6.1f%%\n", "total", "", (long long)total.total, (long long)total.done,
              (long long)total.failed, (long long)total.running, (long long)total.pending,
              total.total ? 100.0 * double(total.done) / double(total.total) : 100.0);
  if (total.failed > 0)  // never counted as done: their results are missing from every metric
    std::printf("\n%lld unit(s) FAILED with their attempts used up (errors below): fix the cause, then `memsweep run STUDY "
                "--retry-failed`\n", (long long)total.failed);
  const double rate = s.units_per_second();
  const int64_t left = total.running + total.pending;
  std::printf("\nlatest run started %s, %s; %lld units done in it, %.3g units/s; ETA %s\n", s.last_run_started.c_str(),
              s.last_run_outcome.empty() ? "running (or ended without a word)" : s.last_run_outcome.c_str(),
              (long long)s.done_in_last_run, rate, left == 0 ? "0s" : rate > 0 ? format_duration(double(left) / rate).c_str() : "?");
  if (LeaseHolder holder; read_lease(path, holder)) {
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::printf("held by %s%s\n", holder.describe(now).c_str(),
                now - holder.heartbeat > kLeaseExpirySeconds ? " (expired: the next run takes it over)" : "");
  }
  if (!s.failures.empty()) {
    std::printf("\nfailed attempts (%zu, newest first):\n", s.failures.size());
    for (size_t i = 0; i < s.failures.size() && int(i) < failures_shown; ++i) {
      const FailureRow& f = s.failures[i];
      std::printf("  %s attempt %d on rank %d (%s)%s: %s\n", f.unit_key.c_str(), f.attempt, f.rank, f.host.c_str(),
                  f.final ? " [unit failed]" : "", f.error.c_str());
    }
  }
  if (const std::string warning = double_coverage_warning(s); !warning.empty()) std::printf("\n%s\n", warning.c_str());
  if (metrics) print_metrics(path);
  return exit_unfinished && left > 0 ? 3 : 0;
}

}  // namespace memsweep
