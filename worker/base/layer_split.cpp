#include "worker/base/layer_split.h"

#include <algorithm>
#include <string>

#include "worker/base/error.h"

namespace memsweep {

namespace {
// Loads of each device when device d ends after layer ends[d] - 1.
std::vector<double> loads(const std::vector<int64_t>& ends, double first_extra, double per_layer, double last_extra) {
  std::vector<double> load(ends.size());
  int64_t begin = 0;
  for (size_t d = 0; d < ends.size(); ++d) {
    load[d] = double(ends[d] - begin) * per_layer;
    begin = ends[d];
  }
  load.front() += first_extra;
  load.back() += last_extra;
  return load;
}
}  // namespace

std::vector<int> split_layers(int64_t layers, int devices, double first_extra, double per_layer, double last_extra) {
  if (devices < 1) throw Error("a model needs at least one device, asked for " + std::to_string(devices));
  if (devices > layers)
    throw Error("cannot split " + std::to_string(layers) + " layers over " + std::to_string(devices) + " devices");
  // Minimise the largest device load: binary search on the cap, each device filled greedily up to it while
  // leaving a layer for every device after it. Layers are few (<= a few hundred): exact enough in 64 steps.
  auto fill = [&](double cap, std::vector<int64_t>& ends) {
    ends.assign(size_t(devices), 0);
    int64_t next = 0;
    for (int d = 0; d < devices; ++d) {
      double load = d == 0 ? first_extra : 0;
      const int64_t must_leave = devices - 1 - d;
      int64_t end = next + 1;  // at least one layer
      load += per_layer;
      while (end < layers - must_leave && load + per_layer + (d == devices - 1 ? last_extra : 0) <= cap) load += per_layer, ++end;
      if (d == devices - 1) end = layers;
      ends[size_t(d)] = end;
      next = end;
    }
    const auto l = loads(ends, first_extra, per_layer, last_extra);
    return *std::max_element(l.begin(), l.end()) <= cap;
  };
  std::vector<int64_t> ends, best;
  double low = 0, high = first_extra + last_extra + double(layers) * per_layer;
  fill(high, best);
  for (int step = 0; step < 64; ++step) {
    const double cap = (low + high) / 2;
    if (fill(cap, ends)) high = cap, best = ends;
    else low = cap;
  }
  std::vector<int> device_of(static_cast<size_t>(layers));
  int64_t begin = 0;
  for (int d = 0; d < devices; ++d) {
    for (int64_t l = begin; l < best[size_t(d)]; ++l) device_of[size_t(l)] = d;
    begin = best[size_t(d)];
  }
  return device_of;
}

double largest_device_share(int64_t layers, int devices, double first_extra, double per_layer, double last_extra) {
  const std::vector<int> device_of = split_layers(layers, devices, first_extra, per_layer, last_extra);
  std::vector<int64_t> ends(size_t(devices), 0);
  for (int64_t l = 0; l < layers; ++l) ends[size_t(device_of[size_t(l)])] = l + 1;
  const auto l = loads(ends, first_extra, per_layer, last_extra);
  return *std::max_element(l.begin(), l.end());
}

}  // namespace memsweep
