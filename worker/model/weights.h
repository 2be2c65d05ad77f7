#pragma once
// Turns checkpoint tensors into libtorch tensors of the run's dtype and device, checking each shape.
// A float tensor whose dtype and device already match and whose bytes are aligned is used in place (the
// tensor points into the mapped file, which stays mapped while the tensor lives): no copy. Anything else
// is converted once.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "worker/checkpoint/checkpoint.h"

namespace memsweep {

class WeightLoader {
 public:
  // `layer_devices`: the device of each layer (one entry per layer; all the same unless the model is split over
  // several devices). Tensors go to the device chosen last by at_layer / at_first / at_last (at first: the first).
  WeightLoader(Checkpoint& checkpoint, torch::ScalarType dtype, std::vector<torch::Device> layer_devices)
      : checkpoint_(checkpoint), dtype_(dtype), layer_devices_(std::move(layer_devices)), device_(layer_devices_.at(0)) {}
  // Throws Error naming the file, the tensor, the expected and the found shape or dtype.
  torch::Tensor take(const std::string& name, const std::vector<int64_t>& shape);
  // The first of `names` present in the checkpoint (e.g. "embed_out.weight" or "lm_head.weight").
  torch::Tensor take_first_of(const std::vector<std::string>& names, const std::vector<int64_t>& shape);
  bool contains(const std::string& name) const { return checkpoint_.contains(name); }
  Checkpoint& checkpoint() { return checkpoint_; }
  torch::ScalarType dtype() const { return dtype_; }
  torch::Device device() const { return device_; }  // where the next tensors go
  // Layer `layer`'s device; the first layer's (input embeddings); the last layer's (final norm, output head).
  void at_layer(int64_t layer) { device_ = layer_devices_.at(size_t(layer)); }
  void at_first() { device_ = layer_devices_.front(); }
  void at_last() { device_ = layer_devices_.back(); }
  const std::vector<torch::Device>& layer_devices() const { return layer_devices_; }

 private:
  Checkpoint& checkpoint_;
  torch::ScalarType dtype_;
  std::vector<torch::Device> layer_devices_;
  torch::Device device_;
};

}  // namespace memsweep
