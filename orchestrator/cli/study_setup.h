#pragma once
// What `run` and `plan` both do before any work: read and check the study, count each dataset's examples,
// hash the data files and tokenizers, and expand the units.
#include <string>
#include <vector>

#include "orchestrator/store/store.h"
#include "orchestrator/study/study.h"

namespace memsweep {

struct PreparedStudy {
  Study study;
  std::string text;
  std::vector<Unit> units;
  std::vector<ModelFacts> models;
  std::vector<DatasetFacts> datasets;
};

// `db_override` (--db) replaces the study's store path when not empty.
PreparedStudy prepare_study(const std::string& path, const std::string& db_override);

}  // namespace memsweep
