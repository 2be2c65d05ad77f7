#pragma once
// How a model too large for one device is split over k devices: its layers in order, each device a contiguous run,
// balanced by parameters (the input embeddings count on the first device, the final layer norm and the output head
// on the last). libtorch-free, table-tested.
#include <cstdint>
#include <vector>

namespace memsweep {

// The device (0..devices-1) of each of `layers` layers, non-decreasing, every device holding at least one layer.
// Error when devices < 1 or devices > layers.
std::vector<int> split_layers(int64_t layers, int devices, double first_extra, double per_layer, double last_extra);

// The largest share of the parameters that one device holds under split_layers (the one that must fit).
double largest_device_share(int64_t layers, int devices, double first_extra, double per_layer, double last_extra);

}  // namespace memsweep
