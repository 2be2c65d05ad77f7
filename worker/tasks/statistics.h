#pragma once
// The uncertainty of every number memsweep reports, from per-example values (what the store keeps, what `eval`
// computes): the standard error of each mean over examples, named as lm-evaluation-harness names it (`acc_stderr`,
// ...), LAMBADA's perplexity standard error by the harness's own bootstrap, and each intervention's paired difference
// against the baseline on the same examples, with a 95 % t-interval, a p-value (exact McNemar for 0/1 metrics, a
// paired t-test for the others) and Holm–Bonferroni over a model's interventions on one dataset and metric.
//
// Partial results (a unit's examples) are combined as moments (count, mean, M2) merged with Chan et al.'s formula,
// never as raw sums of squares, so the numbers do not depend on how a study was cut into units.
// Without libtorch: rank 0's store readers and `eval` share it.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "worker/tasks/results.h"

namespace memsweep {

// Count, mean and the sum of squared deviations from it of a sample.
struct Moments {
  int64_t n = 0;
  double mean = 0, m2 = 0;
  void add(double x);                 // Welford
  void merge(const Moments& other);   // Chan, Golub and LeVeque
  double sample_variance() const;     // m2 / (n - 1); NaN below 2 values
  double standard_error() const;      // sqrt(sample_variance / n), the harness's mean_stderr
};

// Two-sided p-value of Student's t statistic with `df` degrees of freedom (NaN for a NaN t).
double student_t_two_sided_p(double t, double df);
// The quantile of Student's t: P(T <= q) = probability, for probability in (0.5, 1).
double student_t_quantile(double probability, double df);
// Exact two-sided McNemar test on the discordant pairs: min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); 1
// without discordant pairs.
double mcnemar_exact_p(int64_t b, int64_t c);
// Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count as a test).
std::vector<double> holm_adjusted(const std::vector<double>& p);

// lm-evaluation-harness's bootstrap standard error of perplexity = exp(-mean(loglikelihoods)) (api/metrics.py,
// bootstrap_stderr): `iterations` / 1000 chunks, chunk i resampling with Python's random.Random(i).choices, the
// sample standard deviation of the replicates. Same generator, same draws: equal to the harness's up to float
// rounding. Chunks run on up to `threads` threads (0: the machine's cores).
double bootstrap_perplexity_stderr(const std::vector<double>& loglikelihoods, int iterations = 100000, int threads = 0);

constexpr double kSignificance = 0.05;  // α of the paired tests and of Holm–Bonferroni

// An intervention's metric against the baseline's on the examples both have (intervention − baseline).
struct PairedDifference {
  int64_t n = 0;
  double difference = 0, standard_error = 0, ci_low = 0, ci_high = 0;  // mean difference, its SE, 95 % t-interval
  std::string test;                          // "mcnemar" (0/1 metrics) or "paired_t"
  double p_value = 0, p_holm = 0;            // p_holm: Holm-adjusted over the model's interventions on this dataset
  bool significant = false;                  // p_holm <= kSignificance
  int64_t removed = 0, added = 0;            // 0/1 metrics: baseline 1 -> 0 and 0 -> 1 (McNemar's discordant pairs)
};

// {"n", "difference", "stderr", "ci_low", "ci_high", "test", "p_value", "p_holm", "significant"[, "removed", "added"]}
nlohmann::json to_json(const PairedDifference& p);

struct InterventionStatistics {
  Values stderrs;                                    // "exact_match_stderr", "acc_stderr", "perplexity_stderr", ...
  std::map<std::string, PairedDifference> paired;    // metric -> against the baseline (not for the baseline itself)
};

// The metrics of a dataset kind that carry a standard error, and how.
enum class Uncertainty { none, proportion, mean, bootstrap_perplexity };
Uncertainty uncertainty_of(const std::string& kind, const std::string& metric);

// Statistics of one model on one dataset, fed unit by unit (the baseline's units first), per intervention.
class DatasetStatistics {
 public:
  explicit DatasetStatistics(std::string kind) : kind_(std::move(kind)) {}
  // One chunk of an intervention's per-example values. Every baseline chunk must come before the others.
  void add(const std::string& intervention, const std::vector<ExampleRecord>& examples);
  // Per intervention; Holm over the interventions with a p-value for each metric.
  std::map<std::string, InterventionStatistics> finish(int bootstrap_threads = 0) const;

 private:
  struct Accumulated {
    std::map<std::string, Moments> values, differences;
    std::map<std::string, std::pair<int64_t, int64_t>> flips;  // removed, added
    std::vector<std::pair<int64_t, double>> loglikelihoods;   // (index, value) for the perplexity bootstrap
  };
  std::string kind_;
  std::map<std::string, std::vector<double>> baseline_;  // metric -> value per example index (NaN: none)
  std::map<std::string, Accumulated> interventions_;
};

}  // namespace memsweep
