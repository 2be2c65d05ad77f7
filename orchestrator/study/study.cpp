// A study's grid: interventions per model, units per (model, dataset), tokenizer checks, hashes.
#include "orchestrator/study/study.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <set>

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

std::string default_role(const std::string& kind) {
  return kind == "memorization" ? "memorized" : kind == "divergence" ? "divergence" : "benchmark";
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

namespace {

using Ranges = std::vector<std::pair<int64_t, int64_t>>;  // [first, end), sorted, disjoint

// Sorts and merges overlapping or touching ranges; adds to *overlap the examples covered more than once.
Ranges merged(Ranges ranges, int64_t* overlap = nullptr) {
  std::sort(ranges.begin(), ranges.end());
  Ranges out;
  for (const auto& r : ranges) {
    if (!out.empty() && r.first <= out.back().second) {
      if (overlap) *overlap += std::max<int64_t>(0, std::min(r.second, out.back().second) - r.first);
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

// [0, examples) minus `covered`.
Ranges uncovered(const Ranges& covered, int64_t examples) {
  Ranges out;
  int64_t next = 0;
  for (const auto& [first, end] : covered) {
    if (first > next) out.push_back({next, std::min(first, examples)});
    next = std::max(next, end);
  }
  if (next < examples) out.push_back({next, examples});
  return out;
}

// Held units' coverage: (model, dataset) -> intervention -> ranges (unmerged).
using Coverage = std::map<std::pair<std::string, std::string>, std::map<std::string, Ranges>>;
Coverage coverage_of(const std::vector<Unit>& held) {
  Coverage coverage;
  for (const Unit& u : held)
    for (const std::string& name : u.interventions) coverage[{u.model, u.dataset}][name].push_back({u.first, u.first + u.count});
  return coverage;
}

}  // namespace

std::vector<Unit> expand_units(const Study& study, const ExampleCounter& count_examples, const std::vector<Unit>& held) {
  const Coverage coverage = coverage_of(held);
  std::vector<Unit> units;
  for (const ModelEntry& model : study.models) {
    const std::vector<std::string> interventions = study.interventions_for(model);
    for (const DatasetEntry& dataset : study.datasets) {
      if (!study.pairs(dataset, model)) continue;
      const int64_t examples = count_examples(dataset, model);
      const auto covered = coverage.find({model.name, dataset.name});
      // Interventions grouped by the examples still to do for them (study order within and between groups).
      std::vector<std::pair<Ranges, std::vector<std::string>>> groups;
      for (const std::string& name : interventions) {
        Ranges todo = {{0, examples}};
        if (covered != coverage.end()) {
          const auto ranges = covered->second.find(name);
          if (ranges != covered->second.end()) todo = uncovered(merged(ranges->second), examples);
        }
        if (todo.empty() || todo.front().first >= todo.front().second) continue;
        auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == todo; });
        if (group == groups.end()) groups.push_back({todo, {name}});
        else group->second.push_back(name);
      }
      for (const auto& [todo, names] : groups) {
        const size_t size = study.run.interventions_per_unit > 0 ? size_t(study.run.interventions_per_unit) : names.size();
        for (const auto& [begin, end] : todo)
          for (int64_t first = begin; first < end; first += study.run.unit_size)
            for (size_t g = 0; g < names.size(); g += size) {
              Unit unit{model.name, dataset.name, first, std::min(study.run.unit_size, end - first), {}};
              unit.interventions.assign(names.begin() + int64_t(g), names.begin() + int64_t(std::min(names.size(), g + size)));
              units.push_back(std::move(unit));
            }
      }
    }
  }
  return units;
}

UnitPlanner unit_planner(const Study& study, const ExampleCounter& count_examples) {
  return [study, count_examples](const std::vector<Unit>& held) { return expand_units(study, count_examples, held); };
}

std::vector<std::string> removed_from_study(const Study& study, const std::vector<Unit>& held) {
  std::set<std::string> removed;
  std::map<std::string, std::set<std::string>> named;  // model -> the interventions the study gives it
  for (const ModelEntry& m : study.models) {
    const std::vector<std::string> names = study.interventions_for(m);
    named[m.name] = std::set<std::string>(names.begin(), names.end());
  }
  for (const Unit& u : held) {
    const auto model = named.find(u.model);
    if (model == named.end()) {
      removed.insert("model '" + u.model + "'");
      continue;
    }
    bool paired = false;
    for (const DatasetEntry& d : study.datasets) paired = paired || (d.name == u.dataset && study.pairs(d, study.model(u.model)));
    if (!paired) removed.insert("dataset '" + u.dataset + "' on model '" + u.model + "'");
    for (const std::string& name : u.interventions)
      if (!model->second.count(name)) removed.insert("intervention '" + name + "' of model '" + u.model + "'");
  }
  return std::vector<std::string>(removed.begin(), removed.end());
}

int64_t doubly_covered(const std::vector<Unit>& held) {
  int64_t overlap = 0;
  for (const auto& [pair, by_intervention] : coverage_of(held))
    for (const auto& [name, ranges] : by_intervention) merged(ranges, &overlap);
  return overlap;
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
