#include "worker/model/config_reader.h"

#include "worker/base/error.h"
#include "worker/base/json_file.h"

namespace memsweep {

ConfigReader::ConfigReader(const std::string& model_dir) : path_(model_dir + "/config.json") {
  json_ = read_json_file(path_);
  if (!json_.is_object()) throw Error(path_ + ": expected a JSON object");
}

void ConfigReader::fail(const std::string& key, const std::string& problem) const {
  throw Error(path_ + ": key '" + key + "': " + problem);
}

bool ConfigReader::has(const std::string& key) const {
  auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

int64_t ConfigReader::require_int(const std::string& key) const {
  if (!has(key)) fail(key, "missing (an integer is required)");
  return get_int(key, 0);
}

int64_t ConfigReader::get_int(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_.at(key);
  if (!v.is_number_integer()) fail(key, "expected an integer, found " + v.dump());
  return v.get<int64_t>();
}

double ConfigReader::get_double(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_.at(key);
  if (!v.is_number()) fail(key, "expected a number, found " + v.dump());
  return v.get<double>();
}

bool ConfigReader::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_.at(key);
  if (!v.is_boolean()) fail(key, "expected true or false, found " + v.dump());
  return v.get<bool>();
}

std::string ConfigReader::require_string(const std::string& key) const {
  if (!has(key)) fail(key, "missing (a string is required)");
  return get_string(key, "");
}

std::string ConfigReader::get_string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_.at(key);
  if (!v.is_string()) fail(key, "expected a string, found " + v.dump());
  return v.get<std::string>();
}

std::vector<int64_t> ConfigReader::get_int_list(const std::string& key) const {
  if (!has(key)) return {};
  const auto& v = json_.at(key);
  if (v.is_number_integer()) return {v.get<int64_t>()};
  std::vector<int64_t> ids;
  if (v.is_array()) {
    for (const auto& item : v) {
      if (!item.is_number_integer()) fail(key, "expected an integer or a list of integers, found " + v.dump());
      ids.push_back(item.get<int64_t>());
    }
    return ids;
  }
  fail(key, "expected an integer or a list of integers, found " + v.dump());
}

std::optional<nlohmann::json> ConfigReader::get_object(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const auto& v = json_.at(key);
  if (!v.is_object()) fail(key, "expected an object, found " + v.dump());
  return v;
}

}  // namespace memsweep
