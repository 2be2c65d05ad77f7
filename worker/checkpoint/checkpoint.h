#pragma once
// A model directory as published on the Hub: config.json + model.safetensors, or sharded
// model-0000k-of-0000n.safetensors + model.safetensors.index.json; failing those, the same layout in
// torch.save's format (pytorch_model.bin, or pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json,
// read by torch_bin.h without unpickling arbitrary objects). Safetensors win when both are present.
// Strict: a model takes each tensor by name (take()); at the end, check_all_taken() fails on any tensor
// nobody used that is not on the skip list.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "worker/checkpoint/safetensors.h"

namespace memsweep {

// One tensor of a checkpoint file, format-neutral: where its bytes lie in a mapped file and how to read them.
struct StoredTensor {
  std::string name;
  std::string file;  // path, for messages
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements; row-major contiguous for safetensors
  const uint8_t* data = nullptr;  // first element
  std::shared_ptr<MappedFile> mapping;  // keeps `data` valid
};

class Checkpoint {
 public:
  // Opens and validates every weight file of the directory (headers only: data stays mapped, unread).
  static Checkpoint open(const std::string& model_dir);
  // The same checks without mapping anything (safetensors headers read from the files; a .bin's archive is mapped
  // to read its table of contents): what plan, submit and run check before any work. Tensors have no data.
  static Checkpoint check(const std::string& model_dir);

  const std::string& directory() const { return directory_; }
  bool contains(const std::string& name) const;
  // Marks the tensor used; throws Error naming the directory and the tensor when it is absent.
  const StoredTensor& take(const std::string& name);
  // Throws Error listing every tensor (with its file) that no take() used and whose name does not end in
  // one of `skip_suffixes` (buffers older files carry, e.g. "attention.masked_bias").
  void check_all_taken(const std::vector<std::string>& skip_suffixes) const;

 private:
  static Checkpoint open_files(const std::string& model_dir, bool headers_only);
  void add(std::vector<StoredTensor> tensors);  // sorted insert; Error on a name seen in another file
  const StoredTensor* find(const std::string& name) const;

  std::string directory_;
  std::vector<StoredTensor> tensors_;  // sorted by name
  std::set<std::string> taken_;
};

// Row-major strides of `shape`, in elements.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

}  // namespace memsweep
