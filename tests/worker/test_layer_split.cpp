// split_layers: a model's layers over k devices (worker/base/layer_split.h). Part of test_base.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <numeric>

#include "worker/base/error.h"
#include "worker/base/layer_split.h"

using memsweep::split_layers;

BOOST_AUTO_TEST_CASE(layer_split_table) {
  struct Case {
    const char* model;
    int64_t layers;
    int devices;
    double first, per_layer, last;
    std::vector<int> expected;  // layers per device
  };
  // Parameters in millions: Pythia-12B (36 layers of 12·5120² + biases, 50688 × 5120 embeddings and head),
  // GPT-Neo-1.3B (24 layers, tied head on the first device with the embeddings: last_extra only the final norm).
  const Case cases[] = {
      {"even, no extras", 4, 2, 0, 1, 0, {2, 2}},
      {"one device", 5, 1, 3, 1, 3, {5}},
      {"as many devices as layers", 3, 3, 10, 1, 10, {1, 1, 1}},
      {"pythia-12b on 2", 36, 2, 259.5, 314.7, 259.5, {18, 18}},
      {"pythia-12b on 4", 36, 4, 259.5, 314.7, 259.5, {9, 9, 9, 9}},
      {"pythia-12b on 3", 36, 3, 259.5, 314.7, 259.5, {12, 12, 12}},
      {"heavy embeddings", 8, 2, 4, 1, 0, {2, 6}},
      {"heavy head", 8, 2, 0, 1, 4, {6, 2}},
      {"gpt-neo-1.3b on 2 (tied head)", 24, 2, 257.3 + 4.2, 50.4, 0, {9, 15}},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.model) {
      const std::vector<int> device_of = split_layers(c.layers, c.devices, c.first, c.per_layer, c.last);
      BOOST_TEST(int64_t(device_of.size()) == c.layers);
      BOOST_TEST(std::is_sorted(device_of.begin(), device_of.end()));
      std::vector<int> counts(size_t(c.devices), 0);
      for (int d : device_of) ++counts.at(size_t(d));
      BOOST_TEST(counts == c.expected, boost::test_tools::per_element());
      // No device holds more than an even share plus one layer (or its extras plus one layer).
      const double total = c.first + c.last + double(c.layers) * c.per_layer;
      const double bound = std::max({total / c.devices, c.first, c.last}) + c.per_layer + 1e-9;
      BOOST_TEST(memsweep::largest_device_share(c.layers, c.devices, c.first, c.per_layer, c.last) <= bound);
    }
  }
}

BOOST_AUTO_TEST_CASE(layer_split_errors) {
  BOOST_CHECK_EXCEPTION(split_layers(4, 0, 0, 1, 0), memsweep::Error, [](const memsweep::Error& e) {
    return std::string(e.what()).find("at least one device") != std::string::npos;
  });
  BOOST_CHECK_EXCEPTION(split_layers(2, 3, 0, 1, 0), memsweep::Error, [](const memsweep::Error& e) {
    return std::string(e.what()).find("cannot split 2 layers over 3 devices") != std::string::npos;
  });
}
