#include "worker/checkpoint/torch_bin.h"

#include "worker/base/error.h"
#include "worker/checkpoint/torch_pickle.h"
#include "worker/checkpoint/zip_archive.h"

namespace memsweep {
namespace {

// Legacy torch.save (before 1.6, or _use_new_zipfile_serialization=False) wrote pickles back to back,
// starting with a protocol-2 PROTO opcode and the LONG1 magic number 0x1950a86a20f9469cfc6c.
bool is_legacy_torch_save(const uint8_t* bytes, uint64_t size) {
  return size >= 4 && bytes[0] == 0x80 && bytes[1] == 0x02 && bytes[2] == 0x8a && bytes[3] == 0x0a;
}

// The one folder every entry lies in (torch names it after the file, or "archive").
std::string top_folder(const std::vector<ZipEntry>& entries, const std::string& origin) {
  if (entries.empty()) throw Error(origin + ": the zip archive is empty; expected torch.save's <folder>/data.pkl");
  const std::string& first = entries.front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos || slash == 0)
    throw Error(origin + ": zip entry '" + first + "' is not inside a folder; torch.save puts every entry in one");
  const std::string folder = first.substr(0, slash + 1);
  for (const auto& entry : entries)
    if (entry.name.compare(0, folder.size(), folder) != 0)
      throw Error(origin + ": zip entries lie in more than one folder ('" + folder + "' and '" + entry.name +
                  "'); torch.save puts every entry in one");
  return folder;
}

bool multiply(uint64_t a, uint64_t b, uint64_t& product) { return !__builtin_mul_overflow(a, b, &product); }
bool add(uint64_t a, uint64_t b, uint64_t& sum) { return !__builtin_add_overflow(a, b, &sum); }

// Checks that every element the tensor addresses lies inside its storage; returns the storage offset in bytes.
uint64_t check_extent(const PickledTensor& tensor, const PickledStorage& storage, const std::string& where) {
  const std::string view = "storage offset " + std::to_string(tensor.storage_offset) + ", size " +
                           shape_string(tensor.shape) + ", stride " + shape_string(tensor.strides);
  const std::string storage_text = "storage '" + storage.key + "' of " + std::to_string(storage.numel) + " elements";
  const uint64_t offset = uint64_t(tensor.storage_offset);
  if (offset > storage.numel) throw Error(where + ": " + view + " starts beyond its " + storage_text);
  bool empty = false;
  for (int64_t dim : tensor.shape) empty |= dim == 0;
  if (empty) return offset * dtype_size(storage.dtype);
  uint64_t last = offset;  // index of the highest element addressed
  bool fits = true;
  for (size_t i = 0; i < tensor.shape.size() && fits; ++i) {
    uint64_t step = 0;
    fits = multiply(uint64_t(tensor.shape[i] - 1), uint64_t(tensor.strides[i]), step) && add(last, step, last);
  }
  if (!fits || last >= storage.numel)
    throw Error(where + ": " + view + " addresses elements beyond its " + storage_text);
  return offset * dtype_size(storage.dtype);
}

}  // namespace

std::vector<StoredTensor> parse_torch_bin(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  if (is_legacy_torch_save(bytes, size))
    throw Error(origin + " is in the legacy torch.save format (before torch 1.6, or _use_new_zipfile_serialization="
                "False), which memsweep does not read: re-save it with a current torch (torch.save(torch.load(path), "
                "path)) or convert it to safetensors");
  const auto entries = parse_stored_zip(bytes, size, origin);
  const std::string folder = top_folder(entries, origin);

  if (const ZipEntry* byteorder = find_zip_entry(entries, folder + "byteorder")) {
    const std::string order(reinterpret_cast<const char*>(bytes + byteorder->data_offset), byteorder->size);
    if (order != "little")
      throw Error(origin + ": byteorder is '" + order + "'; memsweep reads only little-endian checkpoints");
  }
  const ZipEntry* pickle = find_zip_entry(entries, folder + "data.pkl");
  if (!pickle) throw Error(origin + ": zip archive has no " + folder + "data.pkl; not a torch.save file");
  const PickledStateDict state = parse_state_dict_pickle(bytes + pickle->data_offset, pickle->size,
                                                         origin + " (" + folder + "data.pkl)");

  std::vector<const uint8_t*> storage_data;
  for (const auto& storage : state.storages) {
    const std::string name = folder + "data/" + storage.key;
    const ZipEntry* entry = find_zip_entry(entries, name);
    if (!entry)
      throw Error(origin + ": the pickle refers to storage '" + storage.key + "', but the archive has no entry '" +
                  name + "'");
    uint64_t expected = 0;
    if (!multiply(storage.numel, dtype_size(storage.dtype), expected) || entry->size != expected)
      throw Error(origin + ": storage '" + storage.key + "' is declared as " + std::to_string(storage.numel) + " x " +
                  dtype_name(storage.dtype) + " (" + std::to_string(expected) + " bytes) but entry '" + name + "' has " +
                  std::to_string(entry->size) + " bytes");
    storage_data.push_back(bytes + entry->data_offset);
  }

  std::vector<StoredTensor> tensors;
  for (const auto& tensor : state.tensors) {
    const PickledStorage& storage = state.storages[tensor.storage];
    const uint64_t byte_offset = check_extent(tensor, storage, origin + ": tensor '" + tensor.name + "'");
    tensors.push_back({tensor.name, origin, storage.dtype, tensor.shape, tensor.strides,
                       storage_data[tensor.storage] + byte_offset, nullptr});
  }
  return tensors;
}

std::vector<StoredTensor> read_torch_bin(const std::string& path) {
  auto mapping = MappedFile::open(path);
  auto tensors = parse_torch_bin(mapping->data(), mapping->size(), path);
  for (auto& tensor : tensors) tensor.mapping = mapping;
  return tensors;
}

}  // namespace memsweep
