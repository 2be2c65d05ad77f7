#include "orchestrator/cli/study_setup.h"

#include <filesystem>
#include <map>

#include "orchestrator/store/summary.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/checkpoint/checkpoint.h"
#include "worker/tasks/dataset.h"

namespace memsweep {

DatasetSpec dataset_spec(const DatasetEntry& dataset) { return {dataset.name, dataset.kind, dataset.path, dataset.options}; }

PreparedStudy prepare_study(const std::string& path, const std::string& db_override) {
  PreparedStudy prepared;
  prepared.text = read_file(path);
  prepared.study = load_study(path);
  if (!db_override.empty()) prepared.study.store.path = db_override;
  const Study& study = prepared.study;
  check_tokenizers(study);
  for (const ModelEntry& m : study.models) {
    try {
      prepared.contexts.push_back(read_task_context(m.path, m.tokenizer, m.name));
      // The weights' structure (headers, sizes against the files, every shard, no git-lfs pointer) before any work
      // or queue wait: headers only, nothing mapped (a login node may have less memory than the model).
      Checkpoint::check(m.path);
    } catch (const Error& e) {
      throw Error(m.place.str() + ": model '" + m.name + "': " + e.what());
    }
    const TaskContext& context = prepared.contexts.back();
    prepared.models.push_back({m.name, context.tokenizer ? context.tokenizer->content_hash() : ""});
  }
  // A dataset's size depends on what its rows are checked against (tokenizer, vocabulary, max length), never on the
  // model otherwise: counted once for each.
  auto count_key = [&](const DatasetEntry& d, size_t m) {
    const TaskContext& c = prepared.contexts[m];
    return d.name + "|" + prepared.models[m].tokenizer_hash + "|" + std::to_string(c.vocab_size) + "|" + std::to_string(c.max_length);
  };
  std::map<std::string, int64_t> counts;
  for (const DatasetEntry& d : study.datasets) {
    DatasetFacts facts{d.name, sha256_file(d.path), -1};
    for (size_t m = 0; m < study.models.size(); ++m) {
      if (!study.pairs(d, study.models[m])) continue;
      const std::string key = count_key(d, m);
      if (!counts.count(key)) {
        try {
          counts[key] = count_examples(dataset_spec(d), prepared.contexts[m]);
        } catch (const Error& e) {
          throw Error(d.place.str() + ": " + e.what());
        }
      }
      if (facts.num_examples >= 0 && facts.num_examples != counts[key])
        throw Error(d.place.str() + ": dataset '" + d.name + "' has a different number of examples for model '" + study.models[m].name + "'");
      facts.num_examples = counts[key];
    }
    prepared.datasets.push_back(facts);
  }
  for (size_t m = 0; m < study.models.size(); ++m)
    for (const DatasetEntry& d : study.datasets)
      if (study.pairs(d, study.models[m])) prepared.examples[{study.models[m].name, d.name}] = counts.at(count_key(d, m));
  return prepared;
}

void check_store_accepts(const PreparedStudy& prepared, bool extend) {
  const Study& study = prepared.study;
  if (!std::filesystem::exists(study.store.path)) return;
  const StoreSummary summary = read_store_summary(study.store.path);
  if (summary.study_hash.empty()) return;  // created, nothing registered yet
  if (summary.study_hash != study.file_hash && !extend)
    throw Error("the store " + study.store.path + " belongs to another version of the study file (sha256:" + summary.study_hash +
                ", now sha256:" + study.file_hash + "): pass --extend to grow it by what the new version adds (memsweep plan " +
                "shows what), or use a new store");
  std::vector<Unit> held;
  for (const HeldUnit& h : summary.units) held.push_back(h.unit);
  if (const std::vector<std::string> removed = removed_from_study(study, held); !removed.empty()) {
    std::string list;
    for (const std::string& item : removed) list += (list.empty() ? "" : ", ") + item;
    throw Error("the store " + study.store.path + " holds units for what this version of the study no longer names (" + list +
                "): keep them in the study file, or use a new store");
  }
  for (size_t i = 0; i < study.datasets.size(); ++i) {
    const auto recorded = summary.dataset_hashes.find(study.datasets[i].name);
    if (recorded != summary.dataset_hashes.end() && recorded->second != prepared.datasets[i].content_hash)
      throw Error("dataset '" + study.datasets[i].name + "': " + study.datasets[i].path + " changed since the store recorded it "
                  "(sha256:" + recorded->second + ", now sha256:" + prepared.datasets[i].content_hash + "); results would mix two "
                  "datasets: use a new store");
  }
}

std::vector<Unit> PreparedStudy::units_to_add(const std::vector<Unit>& held) const {
  return expand_units(study, [&](const DatasetEntry& d, const ModelEntry& m) { return examples.at({m.name, d.name}); }, held);
}

}  // namespace memsweep
