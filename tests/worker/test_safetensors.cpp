// The safetensors header parser on crafted bytes (a table of malformed headers, each a clear error), and the
// writer's files read back by the reader.
#define BOOST_TEST_MODULE safetensors
#include <cstring>
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "worker/base/error.h"
#include "worker/checkpoint/safetensors.h"

using namespace memsweep;

namespace {
std::vector<uint8_t> file_bytes(const std::string& header, size_t data_bytes, uint64_t declared_length = UINT64_MAX) {
  uint64_t length = declared_length == UINT64_MAX ? header.size() : declared_length;
  std::vector<uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i) bytes[i] = uint8_t(length >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.resize(bytes.size() + data_bytes, 0);
  return bytes;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors_header(bytes.data(), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(valid_header) {
  auto bytes = file_bytes(R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},)"
                          R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"e":{"dtype":"I64","shape":[0],"data_offsets":[28,28]}})",
                          28);
  auto header = parse_safetensors_header(bytes.data(), bytes.size(), "x");
  BOOST_TEST_REQUIRE(header.tensors.size() == 3u);
  BOOST_TEST(header.tensors[0].name == "a");  // sorted by name
  BOOST_TEST(header.tensors[1].name == "b");
  BOOST_TEST((header.tensors[1].shape == std::vector<int64_t>{2, 3}));
  BOOST_TEST(int(header.tensors[1].dtype) == int(DType::BF16));
  BOOST_TEST(header.tensors[2].numel() == 0);
  BOOST_TEST(header.metadata.at("format") == "pt");
}

BOOST_AUTO_TEST_CASE(malformed_headers_are_clear_errors) {
  struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string message;
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const Case cases[] = {
      {"empty file", {}, "fewer than the 8-byte header length"},
      {"length beyond file", file_bytes(ok, 8, 1000), "header length 1000 goes beyond the end of the file"},
      {"bad json", file_bytes(R"({"a":)", 8), "not valid JSON"},
      {"not an object", file_bytes("[1,2]", 8), "not an object"},
      {"unknown dtype", file_bytes(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'F33'"},
      {"negative dim", file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "not a non-negative integer"},
      {"size mismatch", file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes but data_offsets span 8"},
      {"reversed offsets", file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "end before they begin"},
      {"outside data", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8), "data_offsets end at byte 12"},
      {"overlap", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "'a' [0, 8) and 'b' [4, 8) overlap"},
      {"missing offsets", file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "'data_offsets' must be two"},
      {"extra key", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), "unexpected header key 'x'"},
      {"metadata not strings", file_bytes(R"({"__metadata__":{"k":1}})", 0), "__metadata__ value for 'k'"},
      {"overflowing shape", file_bytes(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflows"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      std::string message = error_of(c.bytes);
      BOOST_TEST(message.find(c.message) != std::string::npos, "got: '" << message << "'");
      BOOST_TEST(message.rfind("x.safetensors", 0) == 0u, "error names the file: " << message);
    }
  }
}

BOOST_AUTO_TEST_CASE(written_files_read_back) {
  const auto path = (std::filesystem::temp_directory_path() / "memsweep_test_write.safetensors").string();
  const float a[3] = {1.5f, -2.f, 3.25f};
  const uint16_t b[2] = {7, 9};
  write_safetensors(path, {{"x.a", DType::F32, {3}, a}, {"x.b", DType::BF16, {1, 2}, b}}, {{"model", "m"}});
  auto file = SafetensorsFile::open(path);
  BOOST_TEST(file.metadata().at("model") == "m");
  const TensorInfo* info = file.find("x.a");
  BOOST_TEST_REQUIRE(info != nullptr);
  BOOST_TEST(std::memcmp(file.data(*info), a, sizeof a) == 0);
  BOOST_TEST(reinterpret_cast<uintptr_t>(file.data(*info)) % 8 == 0u);  // header padded: data area aligned
  info = file.find("x.b");
  BOOST_TEST_REQUIRE(info != nullptr);
  BOOST_TEST(std::memcmp(file.data(*info), b, sizeof b) == 0);
  BOOST_TEST(file.find("x.c") == nullptr);
  std::remove(path.c_str());
}
