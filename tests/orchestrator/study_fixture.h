#pragma once
// A temporary folder with what a study file points at: model folders (config.json, tokenizer.json) and data
// files, so study parsing and the coordinator can be tested without real checkpoints.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace memsweep_test {

namespace fs = std::filesystem;

// A byte-level BPE tokenizer.json; `merges` changes its content hash.
inline nlohmann::json tiny_tokenizer(const std::vector<std::string>& merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int c = 33; c <= 126; ++c) vocab[std::string(1, char(c))] = c - 33;
  int next = 94;
  for (const std::string& merge : merges) {
    std::string merged = merge;
    merged.erase(merged.find(' '), 1);
    vocab[merged] = next++;
  }
  nlohmann::json level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", nlohmann::json::array()},
          {"normalizer", nullptr}, {"pre_tokenizer", level}, {"post_processor", nullptr}, {"decoder", level},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"vocab", vocab}, {"merges", merges}}}};
}

class StudyFolder {
 public:
  StudyFolder() {
    root_ = fs::temp_directory_path() / ("memsweep_study_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(root_);
  }
  ~StudyFolder() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  const fs::path& root() const { return root_; }
  fs::path model(const std::string& name, int layers, const std::vector<std::string>& merges = {"a b"}) const {
    fs::create_directories(root_ / name);
    write(name + "/config.json", nlohmann::json{{"model_type", "gpt_neox"}, {"num_hidden_layers", layers}}.dump());
    write(name + "/tokenizer.json", tiny_tokenizer(merges).dump());
    return root_ / name;
  }
  fs::path write(const std::string& relative, const std::string& text) const {
    std::ofstream(root_ / relative) << text;
    return root_ / relative;
  }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path root_;
};

}  // namespace memsweep_test
