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
  WeightLoader(Checkpoint& checkpoint, torch::ScalarType dtype, torch::Device device)
      : checkpoint_(checkpoint), dtype_(dtype), device_(device) {}
  // Throws Error naming the file, the tensor, the expected and the found shape or dtype.
  torch::Tensor take(const std::string& name, const std::vector<int64_t>& shape);
  // The first of `names` present in the checkpoint (e.g. "embed_out.weight" or "lm_head.weight").
  torch::Tensor take_first_of(const std::vector<std::string>& names, const std::vector<int64_t>& shape);
  bool contains(const std::string& name) const { return checkpoint_.contains(name); }
  Checkpoint& checkpoint() { return checkpoint_; }
  torch::ScalarType dtype() const { return dtype_; }
  torch::Device device() const { return device_; }

 private:
  Checkpoint& checkpoint_;
  torch::ScalarType dtype_;
  torch::Device device_;
};

}  // namespace memsweep
