#include "worker/tasks/statistics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <future>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "worker/base/error.h"

namespace memsweep {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

void Moments::add(double x) {
  ++n;
  const double delta = x - mean;
  mean += delta / double(n);
  m2 += delta * (x - mean);
}

void Moments::merge(const Moments& other) {
  if (other.n == 0) return;
  if (n == 0) {
    *this = other;
    return;
  }
  const double total = double(n + other.n), delta = other.mean - mean;
  mean += delta * double(other.n) / total;
  m2 += other.m2 + delta * delta * double(n) * double(other.n) / total;
  n += other.n;
}

double Moments::sample_variance() const { return n < 2 ? kNaN : std::max(m2, 0.0) / double(n - 1); }

double Moments::standard_error() const { return std::sqrt(sample_variance() / double(n)); }

namespace {

// The continued fraction of the regularized incomplete beta function (modified Lentz), for x < (a + 1) / (a + b + 2).
double beta_fraction(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m < 100000; ++m) {
    const double m2 = 2.0 * m;
    double term = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + term * d, c = 1 + term / c;
    if (std::fabs(d) < tiny) d = tiny;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d, h *= d * c;
    term = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + term * d, c = 1 + term / c;
    if (std::fabs(d) < tiny) d = tiny;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < 1e-16) return h;
  }
  throw Error("the incomplete beta function did not converge (a = " + std::to_string(a) + ", b = " + std::to_string(b) + ")");
}

// I_x(a, b), with y = 1 - x given exactly (a p-value near 0 comes from whichever side is small).
double regularized_beta(double a, double b, double x, double y) {
  if (x <= 0) return 0;
  if (y <= 0) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log(y));
  if (x < (a + 1) / (a + b + 2)) return front * beta_fraction(a, b, x) / a;
  return 1 - front * beta_fraction(b, a, y) / b;
}

}  // namespace

double student_t_two_sided_p(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return kNaN;
  if (std::isinf(t)) return 0;
  const double t2 = t * t;
  return regularized_beta(df / 2, 0.5, df / (df + t2), t2 / (df + t2));
}

double student_t_quantile(double probability, double df) {
  if (!(probability > 0.5 && probability < 1) || !(df > 0)) return kNaN;
  const double two_sided = 2 * (1 - probability);
  double low = 0, high = 1;
  while (student_t_two_sided_p(high, df) > two_sided) low = high, high *= 2;
  for (int i = 0; i < 200 && high - low > 1e-16 * high; ++i) {
    const double middle = (low + high) / 2;
    (student_t_two_sided_p(middle, df) > two_sided ? low : high) = middle;
  }
  return (low + high) / 2;
}

double mcnemar_exact_p(int64_t b, int64_t c) {
  const int64_t n = b + c, k = std::min(b, c);
  if (n == 0) return 1;
  // P(X <= k) for X ~ Binomial(n, 1/2) = I_{1/2}(n - k, k + 1).
  return std::min(1.0, 2 * regularized_beta(double(n - k), double(k + 1), 0.5, 0.5));
}

std::vector<double> holm_adjusted(const std::vector<double>& p) {
  std::vector<size_t> order;
  for (size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> adjusted(p.size(), kNaN);
  double running = 0;
  for (size_t rank = 0; rank < order.size(); ++rank) {
    running = std::max(running, std::min(1.0, double(order.size() - rank) * p[order[rank]]));
    adjusted[order[rank]] = running;
  }
  return adjusted;
}

namespace {

// CPython's Mersenne Twister, seeded as random.Random(int) seeds it (init_by_array of the integer's 32-bit words: one
// word here), and its random(): 53 bits from two outputs. The state goes into std::mt19937 through its textual
// representation (the standard's: the n state words, the next output twisting them), whose generation is the same.
class PythonRandom {
 public:
  explicit PythonRandom(uint32_t seed) {
    constexpr uint32_t kN = 624;
    std::array<uint32_t, kN> state{};
    state[0] = 19650218u;
    for (uint32_t i = 1; i < kN; ++i) state[i] = 1812433253u * (state[i - 1] ^ (state[i - 1] >> 30)) + i;
    uint32_t i = 1;
    for (uint32_t k = kN; k; --k) {  // the key [seed] (Python seeds 0 with the key [0])
      state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) * 1664525u)) + seed;
      if (++i >= kN) state[0] = state[kN - 1], i = 1;
    }
    for (uint32_t k = kN - 1; k; --k) {
      state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) * 1566083941u)) - i;
      if (++i >= kN) state[0] = state[kN - 1], i = 1;
    }
    state[0] = 0x80000000u;
    std::stringstream text;
    for (uint32_t word : state) text << word << ' ';
    text >> engine_;
  }
  double random() {
    const uint32_t a = uint32_t(engine_()) >> 5, b = uint32_t(engine_()) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
  }

 private:
  std::mt19937 engine_;
};

// Chunk `seed` of the harness's bootstrap: `size` replicates of exp(-mean(rnd.choices(xs, k=len(xs)))).
Moments bootstrap_chunk(const std::vector<double>& xs, uint32_t seed, int size) {
  PythonRandom random(seed);
  const double n = double(xs.size());
  Moments replicates;
  for (int r = 0; r < size; ++r) {
    double sum = 0;
    for (size_t k = 0; k < xs.size(); ++k) sum += xs[std::min(xs.size() - 1, size_t(random.random() * n))];  // floor
    replicates.add(std::exp(-(sum / n)));
  }
  return replicates;
}

}  // namespace

double bootstrap_perplexity_stderr(const std::vector<double>& loglikelihoods, int iterations, int threads) {
  if (loglikelihoods.size() < 2) return kNaN;  // the harness: "N/A" for a single item
  const int chunk = std::min(1000, iterations), chunks = iterations / chunk;
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min(threads, chunks);
  std::vector<Moments> per_thread(static_cast<size_t>(threads));
  std::vector<std::future<void>> running;
  for (int t = 0; t < threads; ++t)
    running.push_back(std::async(std::launch::async, [&, t] {
      for (int c = t; c < chunks; c += threads) per_thread[size_t(t)].merge(bootstrap_chunk(loglikelihoods, uint32_t(c), chunk));
    }));
  Moments all;
  for (int t = 0; t < threads; ++t) running[size_t(t)].get(), all.merge(per_thread[size_t(t)]);
  return std::sqrt(all.sample_variance());
}

nlohmann::json to_json(const PairedDifference& p) {
  nlohmann::json json = {{"n", p.n}, {"difference", p.difference}, {"stderr", p.standard_error}, {"ci_low", p.ci_low},
                         {"ci_high", p.ci_high}, {"test", p.test}, {"p_value", p.p_value}, {"p_holm", p.p_holm},
                         {"significant", p.significant}};
  if (p.test == "mcnemar") json["removed"] = p.removed, json["added"] = p.added;
  return json;
}

Uncertainty uncertainty_of(const std::string& kind, const std::string& metric) {
  if (metric == "exact_match" || metric == "acc" || metric == "acc_norm") return Uncertainty::proportion;
  if (kind == "memorization" && (metric == "token_accuracy" || metric == "completion_entropy" || metric == "match_length"))
    return Uncertainty::mean;
  if (kind == "lambada_openai" && metric == "perplexity") return Uncertainty::bootstrap_perplexity;
  return Uncertainty::none;  // word/byte perplexity, bits per byte (the harness reports none); the divergence kind's
                             // position-weighted means
}

void DatasetStatistics::add(const std::string& intervention, const std::vector<ExampleRecord>& examples) {
  const bool baseline = intervention == "baseline";
  const bool bootstrap = uncertainty_of(kind_, "perplexity") == Uncertainty::bootstrap_perplexity;
  Accumulated& into = interventions_[intervention];
  std::map<std::string, Moments> values, differences;  // this chunk's, merged below
  for (const ExampleRecord& e : examples) {
    for (const auto& [metric, value] : e.values) {
      if (bootstrap && metric == "loglikelihood") into.loglikelihoods.push_back({e.index, value});
      const Uncertainty u = uncertainty_of(kind_, metric);
      if (u == Uncertainty::none) continue;
      values[metric].add(value);
      if (baseline) {
        std::vector<double>& column = baseline_[metric];
        if (column.size() <= size_t(e.index)) column.resize(size_t(e.index) + 1, kNaN);
        column[size_t(e.index)] = value;
        continue;
      }
      const auto column = baseline_.find(metric);
      if (column == baseline_.end() || column->second.size() <= size_t(e.index) || std::isnan(column->second[size_t(e.index)])) continue;
      const double base = column->second[size_t(e.index)];
      differences[metric].add(value - base);
      if (u == Uncertainty::proportion) {
        auto& [removed, added] = into.flips[metric];
        removed += base == 1 && value == 0;
        added += base == 0 && value == 1;
      }
    }
  }
  for (const auto& [metric, m] : values) into.values[metric].merge(m);
  for (const auto& [metric, m] : differences) into.differences[metric].merge(m);
}

std::map<std::string, InterventionStatistics> DatasetStatistics::finish(int bootstrap_threads) const {
  std::map<std::string, InterventionStatistics> out;
  for (const auto& [intervention, accumulated] : interventions_) {
    InterventionStatistics& s = out[intervention];
    for (const auto& [metric, m] : accumulated.values) s.stderrs[metric + "_stderr"] = m.standard_error();
    if (!accumulated.loglikelihoods.empty()) {
      std::vector<std::pair<int64_t, double>> ordered = accumulated.loglikelihoods;  // the harness's order: by document
      std::sort(ordered.begin(), ordered.end());
      std::vector<double> xs;
      for (const auto& [index, value] : ordered) xs.push_back(value);
      s.stderrs["perplexity_stderr"] = bootstrap_perplexity_stderr(xs, 100000, bootstrap_threads);
    }
    for (const auto& [metric, d] : accumulated.differences) {
      PairedDifference p;
      p.n = d.n;
      p.difference = d.mean;
      p.standard_error = d.standard_error();
      const double q = student_t_quantile(0.975, double(d.n - 1));
      p.ci_low = p.difference - q * p.standard_error, p.ci_high = p.difference + q * p.standard_error;
      if (uncertainty_of(kind_, metric) == Uncertainty::proportion) {
        p.test = "mcnemar";
        const auto flips = accumulated.flips.find(metric);
        if (flips != accumulated.flips.end()) p.removed = flips->second.first, p.added = flips->second.second;
        p.p_value = mcnemar_exact_p(p.removed, p.added);
      } else {
        p.test = "paired_t";
        // Every difference equal: none at all is no evidence (p = 1); a constant shift is certain (t = ±inf, p = 0).
        if (p.standard_error == 0) p.p_value = p.difference == 0 ? 1.0 : 0.0, p.ci_low = p.ci_high = p.difference;
        else p.p_value = student_t_two_sided_p(p.difference / p.standard_error, double(d.n - 1));
      }
      s.paired[metric] = p;
    }
  }
  // Holm–Bonferroni per metric over the interventions that have a p-value for it.
  std::map<std::string, std::vector<PairedDifference*>> by_metric;
  for (auto& [intervention, s] : out)
    for (auto& [metric, p] : s.paired) by_metric[metric].push_back(&p);
  for (auto& [metric, tests] : by_metric) {
    std::vector<double> p;
    for (const PairedDifference* t : tests) p.push_back(t->p_value);
    const std::vector<double> adjusted = holm_adjusted(p);
    for (size_t i = 0; i < tests.size(); ++i) tests[i]->p_holm = adjusted[i], tests[i]->significant = adjusted[i] <= kSignificance;
  }
  return out;
}

}  // namespace memsweep
