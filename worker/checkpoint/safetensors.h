#pragma once
// A strict safetensors reader (and a small writer) without libtorch.
//
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {str: str}}, then the data area; data_offsets are [begin, end) relative to the data area.
// open() maps the file read-only-shared (pages are copied only if someone writes, which memsweep never does)
// and validates everything a later read relies on: header length inside the file, JSON object, known dtype,
// non-negative shape, shape x dtype size == byte span, span inside the data area, spans not overlapping.
// Every error names the file and, where there is one, the tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace memsweep {

enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets inside the data area
  uint64_t end = 0;
  int64_t numel() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[3, 4]"

// A read-only memory mapping that stays alive while any tensor made from it does (shared_ptr).
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, uint8_t* data, uint64_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  uint8_t* data_;
  uint64_t size_;
};

// The parsed, validated header of a safetensors file: tensors sorted by name. Pure function of the bytes,
// so it can be fuzzed: `origin` only goes into error messages.
struct SafetensorsHeader {
  uint64_t data_offset = 0;  // where the data area starts in the file (8 + N)
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& origin);
// The same from the file, reading its header only (no mapping: cheap for a 48 GB file on a login node).
SafetensorsHeader read_safetensors_header(const std::string& path);

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  const std::string& path() const { return mapping_->path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  const uint8_t* data(const TensorInfo& tensor) const { return mapping_->data() + header_.data_offset + tensor.begin; }
  const std::shared_ptr<MappedFile>& mapping() const { return mapping_; }

 private:
  SafetensorsFile(std::shared_ptr<MappedFile> mapping, SafetensorsHeader header)
      : mapping_(std::move(mapping)), header_(std::move(header)) {}
  std::shared_ptr<MappedFile> mapping_;
  SafetensorsHeader header_;
};

// Writing, for results (logits dumps) and tests. Tensors are written in the order given; the header is
// padded with spaces to a multiple of 8 bytes so the data area starts 8-byte aligned.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel x dtype_size bytes
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace memsweep
