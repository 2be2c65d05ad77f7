#include "worker/checkpoint/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "worker/base/error.h"
#include "worker/base/json_file.h"

namespace fs = std::filesystem;

namespace memsweep {

Checkpoint Checkpoint::open(const std::string& model_dir) {
  Checkpoint checkpoint;
  checkpoint.directory_ = model_dir;
  const fs::path dir(model_dir);
  if (!fs::is_directory(dir)) throw Error("model directory " + model_dir + " does not exist or is not a directory");
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";

  // Shard file -> the names the index assigns to it.
  std::map<std::string, std::set<std::string>> expected;
  if (fs::exists(index)) {
    nlohmann::json json = read_json_file(index.string());
    auto weight_map = json.find("weight_map");
    if (weight_map == json.end() || !weight_map->is_object())
      throw Error(index.string() + ": missing 'weight_map' object (tensor name -> shard file)");
    for (const auto& [name, file] : weight_map->items()) {
      if (!file.is_string()) throw Error(index.string() + ": weight_map entry '" + name + "' is not a file name");
      const std::string shard = file.get<std::string>();
      if (shard.find('/') != std::string::npos || shard.empty())
        throw Error(index.string() + ": weight_map entry '" + name + "' names '" + shard + "', not a file of the directory");
      expected[shard].insert(name);
    }
    for (const auto& [shard, names] : expected) {
      const fs::path path = dir / shard;
      if (!fs::exists(path))
        throw Error("shard " + path.string() + " is missing (listed in " + index.string() + " for " +
                    std::to_string(names.size()) + " tensors, e.g. '" + *names.begin() + "')");
      checkpoint.files_.push_back(SafetensorsFile::open(path.string()));
    }
  } else if (fs::exists(single)) {
    checkpoint.files_.push_back(SafetensorsFile::open(single.string()));
  } else if (fs::exists(dir / "pytorch_model.bin") || fs::exists(dir / "pytorch_model.bin.index.json")) {
    throw Error(model_dir + " holds pytorch_model.bin weights; memsweep reads safetensors checkpoints "
                "(model.safetensors or model.safetensors.index.json + shards)");
  } else {
    throw Error(model_dir + " has no model.safetensors nor model.safetensors.index.json");
  }

  for (const auto& file : checkpoint.files_) {
    const std::string shard = fs::path(file.path()).filename().string();
    auto names = expected.find(shard);
    for (const auto& info : file.tensors()) {
      if (!expected.empty() && (names == expected.end() || !names->second.count(info.name)))
        throw Error(file.path() + ": tensor '" + info.name + "' is not assigned to this shard by " + index.string());
      checkpoint.by_name_.push_back({info.name, Tensor{&file, &info}});
    }
    if (!expected.empty()) {
      for (const auto& name : names->second)
        if (!file.find(name))
          throw Error(index.string() + " puts tensor '" + name + "' in " + file.path() + ", which does not contain it");
    }
  }
  std::sort(checkpoint.by_name_.begin(), checkpoint.by_name_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < checkpoint.by_name_.size(); ++i)
    if (checkpoint.by_name_[i].first == checkpoint.by_name_[i - 1].first)
      throw Error(model_dir + ": tensor '" + checkpoint.by_name_[i].first + "' appears in both " +
                  checkpoint.by_name_[i - 1].second.file->path() + " and " + checkpoint.by_name_[i].second.file->path());
  return checkpoint;
}

bool Checkpoint::contains(const std::string& name) const {
  return std::binary_search(by_name_.begin(), by_name_.end(), std::make_pair(name, Tensor{}),
                            [](const auto& a, const auto& b) { return a.first < b.first; });
}

Checkpoint::Tensor Checkpoint::take(const std::string& name) {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [](const auto& entry, const std::string& n) { return entry.first < n; });
  if (it == by_name_.end() || it->first != name) throw Error(directory_ + ": checkpoint has no tensor '" + name + "'");
  taken_.insert(name);
  return it->second;
}

void Checkpoint::check_all_taken(const std::vector<std::string>& skip_suffixes) const {
  std::string unused;
  int count = 0;
  for (const auto& [name, tensor] : by_name_) {
    if (taken_.count(name)) continue;
    bool skipped = std::any_of(skip_suffixes.begin(), skip_suffixes.end(), [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
    if (skipped) continue;
    if (++count <= 10) unused += "\n  '" + name + "' " + shape_string(tensor.info->shape) + " in " + tensor.file->path();
  }
  if (count)
    throw Error(directory_ + ": " + std::to_string(count) + " tensor(s) that this architecture does not use" +
                " (wrong model_type in config.json, or a different architecture?):" + unused +
                (count > 10 ? "\n  ..." : ""));
}

}  // namespace memsweep
