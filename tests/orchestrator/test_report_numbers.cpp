// The report's shared definitions that need no store (report.h): relative changes against a baseline.
#define BOOST_TEST_MODULE test_report_numbers
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "orchestrator/report/report.h"

BOOST_AUTO_TEST_CASE(relative_change_against_the_baseline) {
  BOOST_TEST(memsweep::relative_change(0.5, 1.0) == -0.5);
  BOOST_TEST(memsweep::relative_change(3.0, -2.0) == 2.5);  // against |baseline|
  BOOST_TEST(std::isnan(memsweep::relative_change(0.5, 0.0)));
  BOOST_TEST(std::isnan(memsweep::relative_change(0.5, std::numeric_limits<double>::quiet_NaN())));
}
