// A study's grid: interventions per model, units per (model, dataset), tokenizer checks, hashes.
#include "orchestrator/study/study.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>

#include "worker/base/block_list.h"
#include "worker/base/error.h"
#include "worker/base/intervention.h"
#include "worker/base/json_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {

const ModelEntry& Study::model(const std::string& name) const {
  for (const ModelEntry& m : models)
    if (m.name == name) return m;
  throw Error("the study has no model named '" + name + "'");
}

const DatasetEntry& Study::dataset(const std::string& name) const {
  for (const DatasetEntry& d : datasets)
    if (d.name == name) return d;
  throw Error("the study has no dataset named '" + name + "'");
}

bool Study::pairs(const DatasetEntry& dataset, const ModelEntry& model) const {
  return dataset.models.empty() || std::find(dataset.models.begin(), dataset.models.end(), model.name) != dataset.models.end();
}

std::vector<std::string> Study::interventions_for(const ModelEntry& model) const {
  std::vector<std::string> names;
  auto add = [&](const Intervention& intervention) {
    const std::string name = intervention.name();
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  auto add_blocks = [&](const std::vector<int>& blocks) {
    for (const std::string& kind : interventions.kinds) {
      Intervention i;
      (kind == "short_circuit" ? i.short_circuit : i.zero_attention) = blocks;
      add(i);
    }
  };
  if (interventions.baseline) add(Intervention{});
  if (interventions.single_blocks)
    for (int b = 0; b < model.num_layers; ++b) add_blocks({b});
  for (const std::string& list : interventions.blocks) add_blocks(parse_block_list(list, model.num_layers));
  for (int k : interventions.last) {
    if (k < 1 || k > model.num_layers)
      throw Error("'interventions.last': " + std::to_string(k) + " is not between 1 and the number of layers");
    std::vector<int> blocks;
    for (int b = model.num_layers - k; b < model.num_layers; ++b) blocks.push_back(b);
    add_blocks(blocks);
  }
  for (const std::string& name : interventions.names) add(Intervention::parse(name, model.num_layers));
  return names;
}

std::string Unit::key() const {
  std::string key = model + "|" + dataset + "|" + std::to_string(first) + "+" + std::to_string(count) + "|";
  for (size_t i = 0; i < interventions.size(); ++i) key += (i ? " " : "") + interventions[i];
  return key;
}

std::vector<Unit> expand_units(const Study& study, const ExampleCounter& count_examples) {
  std::vector<Unit> units;
  for (const ModelEntry& model : study.models) {
    const std::vector<std::string> interventions = study.interventions_for(model);
    const size_t group = study.run.interventions_per_unit > 0 ? size_t(study.run.interventions_per_unit) : interventions.size();
    for (const DatasetEntry& dataset : study.datasets) {
      if (!study.pairs(dataset, model)) continue;
      const int64_t examples = count_examples(dataset, model);
      for (int64_t first = 0; first < examples; first += study.run.unit_size)
        for (size_t g = 0; g < interventions.size(); g += group) {
          Unit unit{model.name, dataset.name, first, std::min(study.run.unit_size, examples - first), {}};
          unit.interventions.assign(interventions.begin() + g, interventions.begin() + std::min(interventions.size(), g + group));
          units.push_back(std::move(unit));
        }
    }
  }
  return units;
}

void check_tokenizers(const Study& study) {
  std::map<std::string, std::string> hashes;  // path -> content hash, each tokenizer loaded once
  auto hash_of = [&](const std::string& path, const SourcePlace& place) {
    auto found = hashes.find(path);
    if (found != hashes.end()) return found->second;
    try {
      return hashes[path] = Tokenizer::load(path).content_hash();
    } catch (const Error& e) {
      throw Error(place.str() + ": " + e.what());
    }
  };
  for (const DatasetEntry& dataset : study.datasets) {
    if (dataset.tokenizer.empty()) continue;
    const bool declared_hash = dataset.tokenizer.rfind("sha256:", 0) == 0;
    const std::string expected = declared_hash ? dataset.tokenizer.substr(7) : hash_of(dataset.tokenizer, dataset.tokenizer_place);
    for (const ModelEntry& model : study.models) {
      if (!study.pairs(dataset, model)) continue;
      if (model.tokenizer.empty())
        throw Error(dataset.tokenizer_place.str() + ": dataset '" + dataset.name + "' declares a tokenizer but model '" +
                    model.name + "' has none (give the model a 'tokenizer' or put tokenizer.json in its folder)");
      const std::string found = hash_of(model.tokenizer, model.place);
      if (found != expected)
        throw Error(dataset.tokenizer_place.str() + ": tokenizer mismatch: dataset '" + dataset.name +
                    "' was tokenized with sha256:" + expected + ", model '" + model.name + "' uses sha256:" + found +
                    " (" + model.tokenizer + ")");
    }
  }
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr)) throw Error("SHA-256 failed");
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += {kHex[digest[i] >> 4], kHex[digest[i] & 15]};
  return hex;
}

std::string sha256_file(const std::string& path) { return sha256_hex(read_file(path)); }

}  // namespace memsweep
