#pragma once
// Typed access to a Hugging Face config.json with errors that name the file, the key, what was expected
// and what was found. Keys that transformers writes but that do not change the forward pass are ignored;
// keys that would change it and that memsweep does not implement are refused by the architectures.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace memsweep {

class ConfigReader {
 public:
  explicit ConfigReader(const std::string& model_dir);  // reads MODEL_DIR/config.json
  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return json_; }

  bool has(const std::string& key) const;  // present and not null
  int64_t require_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string require_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  // Token ids such as eos_token_id may be an int or a list of ints.
  std::vector<int64_t> get_int_list(const std::string& key) const;
  // A nested object (e.g. rope_parameters), or nullopt when absent/null.
  std::optional<nlohmann::json> get_object(const std::string& key) const;

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;

 private:
  std::string path_;
  nlohmann::json json_;
};

}  // namespace memsweep
