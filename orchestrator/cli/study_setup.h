#pragma once
// What `run` and `plan` both do before any work: read and check the study, read each model's task context, count
// each dataset's examples as its task will read them (tasks/dataset.h, no libtorch, no weights), hash the data files
// and tokenizers; then plan the units a store lacks.
#include <map>
#include <string>
#include <vector>

#include "orchestrator/store/store.h"
#include "orchestrator/study/study.h"
#include "worker/tasks/dataset.h"

namespace memsweep {

struct PreparedStudy {
  Study study;
  std::string text;
  std::vector<ModelFacts> models;
  std::vector<TaskContext> contexts;  // per model, in study order
  std::vector<DatasetFacts> datasets;
  std::map<std::pair<std::string, std::string>, int64_t> examples;  // (model, dataset) -> examples, for the pairs
  // The units to add to a store that holds `held` (expand_units); the whole grid when it holds none.
  std::vector<Unit> units_to_add(const std::vector<Unit>& held) const;
};

// A study's dataset as the tasks take it.
DatasetSpec dataset_spec(const DatasetEntry& dataset);

// `db_override` (--db) replaces the study's store path when not empty.
PreparedStudy prepare_study(const std::string& path, const std::string& db_override);

// What `run` would refuse of an existing store, found without writing to it (submit checks it before sbatch): another
// version of the study file without `extend`, a version that drops what the store holds, a changed dataset file.
void check_store_accepts(const PreparedStudy& prepared, bool extend);

}  // namespace memsweep
