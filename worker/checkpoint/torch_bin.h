#pragma once
// pytorch_model.bin as torch.save (>= 1.6) writes it, read without libtorch and without executing anything:
// a zip archive of stored entries under one top-level folder (its name varies: "archive", the file stem),
//   <folder>/data.pkl     the state dict, pickled; tensors refer to storages by persistent id
//   <folder>/data/<key>   each storage's raw bytes, little-endian, 64-byte aligned
//   <folder>/byteorder    "little" when present (older files omit it and are little-endian)
//   <folder>/version, .format_version, .storage_alignment, .data/serialization_id   (not needed here)
// data.pkl goes through the restricted unpickler of torch_pickle.h. Each tensor becomes a StoredTensor that
// points into its storage's bytes; tensors may share a storage (tied weights, views) and may be
// non-contiguous (strides are kept). Every element a tensor addresses is checked to lie inside its storage.
// The legacy pre-1.6 format (a bare pickle stream) is refused with a message saying how to convert it.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/checkpoint/checkpoint.h"

namespace memsweep {

// Maps the file; the tensors keep the mapping alive. Errors name the file and, where there is one, the
// tensor or archive entry.
std::vector<StoredTensor> read_torch_bin(const std::string& path);

// The same on bytes already in memory (tests, fuzzing): data pointers point into `bytes`, `mapping` is null,
// `file` is `origin`.
std::vector<StoredTensor> parse_torch_bin(const uint8_t* bytes, uint64_t size, const std::string& origin);

}  // namespace memsweep
