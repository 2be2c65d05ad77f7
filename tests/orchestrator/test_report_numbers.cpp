// The report's shared definitions that need no store (report.h): relative changes against a baseline.
#define BOOST_TEST_MODULE test_report_numbers
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "orchestrator/report/report.h"
#include "worker/tasks/statistics.h"

BOOST_AUTO_TEST_CASE(relative_change_against_the_baseline) {
  BOOST_TEST(memsweep::relative_change(0.5, 1.0) == -0.5);
  BOOST_TEST(memsweep::relative_change(3.0, -2.0) == 2.5);  // against |baseline|
  BOOST_TEST(std::isnan(memsweep::relative_change(0.5, 0.0)));
  BOOST_TEST(std::isnan(memsweep::relative_change(0.5, std::numeric_limits<double>::quiet_NaN())));
}

// The statistics the report prints (worker/tasks/statistics.h); their values are checked against numpy/scipy in
// tests/python/test_statistics.py, their algebra here.
BOOST_AUTO_TEST_CASE(moments_merged_from_parts_equal_one_pass) {
  std::vector<double> xs;
  for (int i = 0; i < 1000; ++i) xs.push_back(1e6 + std::sin(i) * 3);  // a large mean: raw sums of squares would cancel
  memsweep::Moments whole;
  for (double x : xs) whole.add(x);
  for (size_t cut : {size_t(1), size_t(7), size_t(500), size_t(999)}) {
    memsweep::Moments a, b;
    for (size_t i = 0; i < xs.size(); ++i) (i < cut ? a : b).add(xs[i]);
    b.merge(a);  // in either order
    BOOST_TEST(b.n == whole.n);
    BOOST_TEST(b.mean == whole.mean, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(b.m2 == whole.m2, boost::test_tools::tolerance(1e-9));
  }
  memsweep::Moments one;
  one.add(3);
  BOOST_TEST(std::isnan(one.sample_variance()));  // one value: no spread to estimate
  memsweep::Moments empty;
  one.merge(empty);
  BOOST_TEST(one.n == 1);
}

BOOST_AUTO_TEST_CASE(paired_tests_and_holm) {
  BOOST_TEST(memsweep::mcnemar_exact_p(0, 0) == 1.0);  // no discordant pair: no evidence
  BOOST_TEST(memsweep::mcnemar_exact_p(20, 0) == std::ldexp(2.0, -20), boost::test_tools::tolerance(1e-12));  // 2 * 0.5^20
  BOOST_TEST(memsweep::mcnemar_exact_p(3, 7) == memsweep::mcnemar_exact_p(7, 3));
  BOOST_TEST(memsweep::mcnemar_exact_p(5, 5) == 1.0);
  // The t quantile inverts the two-sided p-value (to ~1e-11 at 10^6 degrees of freedom, where lgamma's differences
  // lose digits: the study's sets reach 2.4 × 10^6 examples).
  for (double df : {1.0, 4.0, 41.0, 1e6}) {
    const double q = memsweep::student_t_quantile(0.975, df);
    BOOST_TEST(memsweep::student_t_two_sided_p(q, df) == 0.05, boost::test_tools::tolerance(df < 1e3 ? 1e-12 : 1e-9));
  }
  BOOST_TEST(memsweep::student_t_two_sided_p(0, 10) == 1.0, boost::test_tools::tolerance(1e-15));
  BOOST_TEST(std::isnan(memsweep::student_t_quantile(0.975, 0)));
  const std::vector<double> adjusted = memsweep::holm_adjusted({0.01, 0.04, std::nan(""), 0.03});
  BOOST_TEST(adjusted[0] == 0.03, boost::test_tools::tolerance(1e-15));  // 3 tests: 3 * 0.01
  BOOST_TEST(adjusted[3] == 0.06, boost::test_tools::tolerance(1e-15));  // 2 * 0.03
  BOOST_TEST(adjusted[1] == 0.06, boost::test_tools::tolerance(1e-15));  // max(1 * 0.04, 0.06): monotone
  BOOST_TEST(std::isnan(adjusted[2]));
}
