#include "worker/checkpoint/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/checkpoint/torch_bin.h"

namespace fs = std::filesystem;

namespace memsweep {
namespace {

std::vector<StoredTensor> safetensors_tensors(const SafetensorsFile& file) {
  std::vector<StoredTensor> tensors;
  for (const auto& info : file.tensors())
    tensors.push_back({info.name, file.path(), info.dtype, info.shape, contiguous_strides(info.shape), file.data(info),
                       file.mapping()});
  return tensors;
}

// Names, dtypes and shapes from the header alone; no data.
std::vector<StoredTensor> safetensors_structure(const std::string& path) {
  std::vector<StoredTensor> tensors;
  for (const auto& info : read_safetensors_header(path).tensors)
    tensors.push_back({info.name, path, info.dtype, info.shape, contiguous_strides(info.shape), nullptr, nullptr});
  return tensors;
}

// Shard file name -> the tensor names an index.json assigns to it.
std::map<std::string, std::set<std::string>> read_index(const fs::path& index) {
  std::map<std::string, std::set<std::string>> shards;
  nlohmann::json json = read_json_file(index.string());
  auto weight_map = json.find("weight_map");
  if (weight_map == json.end() || !weight_map->is_object())
    throw Error(index.string() + ": missing 'weight_map' object (tensor name -> shard file)");
  for (const auto& [name, file] : weight_map->items()) {
    if (!file.is_string()) throw Error(index.string() + ": weight_map entry '" + name + "' is not a file name");
    const std::string shard = file.get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos)
      throw Error(index.string() + ": weight_map entry '" + name + "' names '" + shard + "', not a file of the directory");
    shards[shard].insert(name);
  }
  return shards;
}

// Each shard holds exactly the tensors the index gives it.
void check_shard_against_index(const std::vector<StoredTensor>& tensors, const std::string& path,
                               const std::set<std::string>& expected, const std::string& index) {
  std::set<std::string> found;
  for (const auto& t : tensors) {
    if (!expected.count(t.name)) throw Error(path + ": tensor '" + t.name + "' is not assigned to this shard by " + index);
    found.insert(t.name);
  }
  for (const auto& name : expected)
    if (!found.count(name)) throw Error(index + " puts tensor '" + name + "' in " + path + ", which does not contain it");
}

}  // namespace

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * std::max<int64_t>(shape[i], 1);
  return strides;
}

namespace {

// A clone without git-lfs (or `git lfs install` forgotten) leaves ~130-byte pointer files where the weights should be.
void refuse_lfs_pointer(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[48] = {};
  in.read(head, sizeof head);
  static const std::string kPointer = "version https://git-lfs.github.com/spec/";
  if (std::string(head, size_t(in.gcount())).rfind(kPointer, 0) == 0)
    throw Error(path.string() + " is a git-lfs pointer file (" + std::to_string(fs::file_size(path)) + " bytes), not the " +
                "weights: fetch them (`git lfs pull` in " + path.parent_path().string() + ") or download the model with `hf download`");
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& model_dir) { return open_files(model_dir, false); }
Checkpoint Checkpoint::check(const std::string& model_dir) { return open_files(model_dir, true); }

Checkpoint Checkpoint::open_files(const std::string& model_dir, bool headers_only) {
  Checkpoint checkpoint;
  checkpoint.directory_ = model_dir;
  const fs::path dir(model_dir);
  if (!fs::is_directory(dir)) throw Error("model directory " + model_dir + " does not exist or is not a directory");

  // Safetensors first: when a repository carries both, they hold the same weights and safetensors is the
  // format that needs no unpickling.
  struct Format {
    const char* single;
    const char* index;
    std::vector<StoredTensor> (*read)(const std::string& path);
  };
  const Format formats[] = {
      {"model.safetensors", "model.safetensors.index.json",
       headers_only ? safetensors_structure : [](const std::string& path) { return safetensors_tensors(SafetensorsFile::open(path)); }},
      {"pytorch_model.bin", "pytorch_model.bin.index.json", read_torch_bin},
  };
  for (const auto& format : formats) {
    const fs::path single = dir / format.single;
    const fs::path index = dir / format.index;
    if (fs::exists(index)) {
      for (const auto& [shard, names] : read_index(index)) {
        const fs::path path = dir / shard;
        if (!fs::exists(path))
          throw Error("shard " + path.string() + " is missing (listed in " + index.string() + " for " +
                      std::to_string(names.size()) + " tensors, e.g. '" + *names.begin() + "')");
        refuse_lfs_pointer(path);
        auto tensors = format.read(path.string());
        check_shard_against_index(tensors, path.string(), names, index.string());
        checkpoint.add(std::move(tensors));
      }
      return checkpoint;
    }
    if (fs::exists(single)) {
      refuse_lfs_pointer(single);
      checkpoint.add(format.read(single.string()));
      return checkpoint;
    }
  }
  throw Error(model_dir + " has no model.safetensors, model.safetensors.index.json, pytorch_model.bin nor "
              "pytorch_model.bin.index.json");
}

void Checkpoint::add(std::vector<StoredTensor> tensors) {
  for (auto& t : tensors) {
    if (const StoredTensor* other = find(t.name))
      throw Error(directory_ + ": tensor '" + t.name + "' appears in both " + other->file + " and " + t.file);
    auto at = std::lower_bound(tensors_.begin(), tensors_.end(), t.name,
                               [](const StoredTensor& s, const std::string& n) { return s.name < n; });
    tensors_.insert(at, std::move(t));
  }
}

const StoredTensor* Checkpoint::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const StoredTensor& s, const std::string& n) { return s.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

bool Checkpoint::contains(const std::string& name) const { return find(name) != nullptr; }

const StoredTensor& Checkpoint::take(const std::string& name) {
  const StoredTensor* tensor = find(name);
  if (!tensor) throw Error(directory_ + ": checkpoint has no tensor '" + name + "'");
  taken_.insert(name);
  return *tensor;
}

void Checkpoint::check_all_taken(const std::vector<std::string>& skip_suffixes) const {
  std::string unused;
  int count = 0;
  for (const auto& tensor : tensors_) {
    const std::string& name = tensor.name;
    if (taken_.count(name)) continue;
    bool skipped = std::any_of(skip_suffixes.begin(), skip_suffixes.end(), [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
    if (skipped) continue;
    if (++count <= 10) unused += "\n  '" + name + "' " + shape_string(tensor.shape) + " in " + tensor.file;
  }
  if (count)
    throw Error(directory_ + ": " + std::to_string(count) + " tensor(s) that this architecture does not use" +
                " (wrong model_type in config.json, or a different architecture?):" + unused +
                (count > 10 ? "\n  ..." : ""));
}

}  // namespace memsweep
