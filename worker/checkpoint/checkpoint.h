#pragma once
// A model directory as published on the Hub: config.json + model.safetensors, or sharded
// model-0000k-of-0000n.safetensors + model.safetensors.index.json. Strict: a model takes each tensor by
// name (take()); at the end, check_all_taken() fails on any tensor nobody used that is not on the skip list.
#include <set>
#include <string>
#include <vector>

#include "worker/checkpoint/safetensors.h"

namespace memsweep {

class Checkpoint {
 public:
  // Opens and validates every safetensors file of the directory (headers only: data stays mapped, unread).
  static Checkpoint open(const std::string& model_dir);
  Checkpoint(Checkpoint&&) = default;  // tensors point into files_, which a move keeps in place
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  struct Tensor {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const std::string& directory() const { return directory_; }
  bool contains(const std::string& name) const;
  // Marks the tensor used; throws Error naming the directory and the tensor when it is absent.
  Tensor take(const std::string& name);
  // Throws Error listing every tensor (with its file) that no take() used and whose name does not end in
  // one of `skip_suffixes` (buffers older files carry, e.g. "attention.masked_bias").
  void check_all_taken(const std::vector<std::string>& skip_suffixes) const;

 private:
  Checkpoint() = default;
  std::string directory_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::pair<std::string, Tensor>> by_name_;  // sorted by name
  std::set<std::string> taken_;
};

}  // namespace memsweep
