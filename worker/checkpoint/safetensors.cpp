#include "worker/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "worker/base/error.h"

namespace memsweep {
namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},     {DType::I8, "I8", 1},   {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2}, {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},   {DType::U32, "U32", 4}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8},   {DType::U64, "U64", 8},
};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  throw Error("internal: unknown DType");
}

std::string known_dtypes() {
  std::string names;
  for (const auto& e : kDTypes) names += (names.empty() ? "" : ", ") + std::string(e.name);
  return names;
}

// Multiplies with an overflow check; the limit is far beyond any file that could exist.
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) throw Error(what + ": size overflows 64 bits");
  return a * b;
}

TensorInfo parse_tensor_entry(const std::string& name, const nlohmann::json& value, uint64_t data_size,
                              const std::string& origin) {
  const std::string where = origin + ": tensor '" + name + "'";
  if (!value.is_object()) throw Error(where + ": header entry is not a JSON object");
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(where + ": unexpected header key '" + key + "' (expected dtype, shape, data_offsets)");
  }
  TensorInfo info;
  info.name = name;
  auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) throw Error(where + ": missing or non-string 'dtype'");
  const std::string dtype_text = dtype->get<std::string>();
  bool known = false;
  for (const auto& e : kDTypes)
    if (dtype_text == e.name) info.dtype = e.dtype, known = true;
  if (!known) throw Error(where + ": unknown dtype '" + dtype_text + "' (known: " + known_dtypes() + ")");

  auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) throw Error(where + ": missing or non-array 'shape'");
  uint64_t numel = 1;
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned()) throw Error(where + ": shape " + shape->dump() + " has an entry that is not a non-negative integer");
    uint64_t d = dim.get<uint64_t>();
    if (d > uint64_t(std::numeric_limits<int64_t>::max())) throw Error(where + ": shape dimension too large");
    info.shape.push_back(int64_t(d));
    numel = checked_mul(numel, d, where);
  }

  auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned())
    throw Error(where + ": 'data_offsets' must be two non-negative integers [begin, end]");
  info.begin = (*offsets)[0].get<uint64_t>();
  info.end = (*offsets)[1].get<uint64_t>();
  if (info.end < info.begin)
    throw Error(where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "] end before they begin");
  const uint64_t expected_bytes = checked_mul(numel, entry(info.dtype).size, where);
  if (info.end - info.begin != expected_bytes)
    throw Error(where + ": shape " + shape_string(info.shape) + " x " + dtype_text + " needs " + std::to_string(expected_bytes) +
                " bytes but data_offsets span " + std::to_string(info.end - info.begin));
  if (info.end > data_size)
    throw Error(where + ": data_offsets end at byte " + std::to_string(info.end) + " of the data area, which has only " +
                std::to_string(data_size) + " bytes (file truncated?)");
  return info;
}

}  // namespace

const char* dtype_name(DType dtype) { return entry(dtype).name; }
size_t dtype_size(DType dtype) { return entry(dtype).size; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error("cannot stat " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + " is not a regular file");
  }
  uint64_t size = uint64_t(st.st_size);
  uint8_t* data = nullptr;
  if (size > 0) {
    // MAP_PRIVATE + PROT_WRITE: libtorch tensors are mutable in type; a stray write copies one page instead
    // of crashing or changing the checkpoint on disk.
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error("cannot map " + path + " into memory: " + std::strerror(err));
    }
    data = static_cast<uint8_t*>(p);
  }
  ::close(fd);
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  if (size < 8)
    throw Error(origin + ": not a safetensors file: " + std::to_string(size) + " bytes, fewer than the 8-byte header length");
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[i];
  if (header_length > size - 8)
    throw Error(origin + ": header length " + std::to_string(header_length) + " goes beyond the end of the file (" +
                std::to_string(size) + " bytes): truncated or not a safetensors file");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_length);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(origin + ": header is not valid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double (found by fuzz_safetensors)
    throw Error(origin + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(origin + ": header is JSON but not an object");

  SafetensorsHeader result;
  result.data_offset = 8 + header_length;
  const uint64_t data_size = size - result.data_offset;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw Error(origin + ": __metadata__ is not an object");
      for (const auto& [key, text_value] : value.items()) {
        if (!text_value.is_string()) throw Error(origin + ": __metadata__ value for '" + key + "' is not a string");
        result.metadata[key] = text_value.get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(parse_tensor_entry(name, value, data_size, origin));
  }
  // Overlap check on spans sorted by start; empty tensors occupy nothing.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : result.tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      throw Error(origin + ": tensors '" + by_offset[i - 1]->name + "' [" + std::to_string(by_offset[i - 1]->begin) + ", " +
                  std::to_string(by_offset[i - 1]->end) + ") and '" + by_offset[i]->name + "' [" +
                  std::to_string(by_offset[i]->begin) + ", " + std::to_string(by_offset[i]->end) + ") overlap");
  }
  // nlohmann's object iterates sorted by key, so tensors are already sorted by name.
  return result;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path + ": " + std::strerror(errno));
  const uint64_t size = std::filesystem::file_size(path);
  std::vector<uint8_t> bytes(size_t(std::min<uint64_t>(size, 8)));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  if (size >= 8) {  // parse_safetensors_header reads the 8-byte length and then that many bytes, nothing else
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[size_t(i)];
    if (header_length <= size - 8) {
      bytes.resize(size_t(8 + header_length));
      in.read(reinterpret_cast<char*>(bytes.data() + 8), std::streamsize(header_length));
      if (!in) throw Error("cannot read the header of " + path);
    }
  }
  return parse_safetensors_header(bytes.data(), size, path);
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  auto header = parse_safetensors_header(mapping->data(), mapping->size(), path);
  return SafetensorsFile(std::move(mapping), std::move(header));
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(header_.tensors.begin(), header_.tensors.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != header_.tensors.end() && it->name == name ? &*it : nullptr;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) bytes *= uint64_t(d);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  // Written beside the target and renamed into place: a reader never sees half a file.
  const std::string partial = path + ".partial";
  std::ofstream out(partial, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("cannot open " + partial + " for writing");
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& t : tensors) {
    uint64_t bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) bytes *= uint64_t(d);
    out.write(static_cast<const char*>(t.data), std::streamsize(bytes));
  }
  out.close();
  if (!out) {
    std::remove(partial.c_str());
    throw Error("error while writing " + partial + " (disk full?)");
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) throw Error("cannot rename " + partial + " to " + path + ": " + std::strerror(errno));
}

}  // namespace memsweep
