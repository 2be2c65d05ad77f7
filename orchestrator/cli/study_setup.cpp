#include "orchestrator/cli/study_setup.h"

#include <map>

#include "orchestrator/worker_loop/worker_loop.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {

PreparedStudy prepare_study(const std::string& path, const std::string& db_override) {
  PreparedStudy prepared;
  prepared.text = read_file(path);
  prepared.study = load_study(path);
  if (!db_override.empty()) prepared.study.store.path = db_override;
  const Study& study = prepared.study;
  check_tokenizers(study);
  for (const ModelEntry& m : study.models)
    prepared.models.push_back({m.name, m.tokenizer.empty() ? "" : Tokenizer::load(m.tokenizer).content_hash()});
  // A dataset's size may depend on its tokenizer, never on the model otherwise: count once per tokenizer.
  std::map<std::pair<std::string, std::string>, int64_t> counts;
  for (const DatasetEntry& d : study.datasets) {
    DatasetFacts facts{d.name, sha256_file(d.path), -1};
    for (const ModelEntry& m : study.models) {
      if (!study.pairs(d, m)) continue;
      auto key = std::make_pair(d.name, m.tokenizer);
      if (!counts.count(key)) {
        try {
          counts[key] = count_examples(d, m);
        } catch (const Error& e) {
          throw Error(d.place.str() + ": dataset '" + d.name + "': " + e.what());
        }
      }
      if (facts.num_examples >= 0 && facts.num_examples != counts[key])
        throw Error(d.place.str() + ": dataset '" + d.name + "' has a different number of examples for model '" + m.name + "'");
      facts.num_examples = counts[key];
    }
    prepared.datasets.push_back(facts);
  }
  prepared.units = expand_units(study, [&](const DatasetEntry& d, const ModelEntry& m) { return counts.at({d.name, m.tokenizer}); });
  return prepared;
}

}  // namespace memsweep
