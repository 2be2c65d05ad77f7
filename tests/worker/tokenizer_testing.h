#pragma once
// Helpers of the tokenizer unit tests (test_tokenizer.cpp, test_tokenizer_sentencepiece.cpp).
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "worker/base/error.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenizer_testing {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

// A tokenizer.json given as JSON; errors start with "small.json".
inline memsweep::Tokenizer from_json(const nlohmann::json& config) {
  return memsweep::Tokenizer::from_tokenizer_json(config.dump(), "small.json");
}

// What loading throws, or "(no error)": the refusal tables compare it with the exact message expected.
template <typename Load>
std::string error_message(Load load) {
  try {
    load();
  } catch (const memsweep::Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string shared_file(const std::string& relative) {
  return std::string(MEMSWEEP_SHARED_DIR) + "/data/tokenizers/" + relative;
}

struct SharedFilesPresent {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result result(fs::exists(shared_file("gpt2/tokenizer.json")) &&
                                               fs::exists(shared_file("gpt-neox-20b/tokenizer.json")));
    result.message() << "skipped: the real tokenizer files are not under " << MEMSWEEP_SHARED_DIR;
    return result;
  }
};

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("memsweep_test_tokenizer_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& content) const { std::ofstream(path / name, std::ios::binary) << content; }
};

}  // namespace tokenizer_testing
