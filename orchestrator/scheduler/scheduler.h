#pragma once
// Which idle worker gets which pending unit: a pure function of (pending units, workers, what each worker
// has loaded), so it is tested with tables and no MPI.
//
// Policy: an idle worker first gets a unit of the model it holds (no reload). A worker whose model has no
// pending units left loads the model with the most pending units per worker already holding it (spreads
// workers over the remaining work while loading each model as few times as possible); ties go to the model
// whose first pending unit comes first in study order.
#include <cstdint>
#include <string>
#include <vector>

namespace memsweep {

struct PendingUnit {
  int64_t id = 0;
  std::string model;
};

struct WorkerView {
  int rank = 0;
  std::string loaded_model;  // "" when none
  bool idle = false;
};

struct Assignment {
  int rank = 0;
  int64_t unit = 0;
};

// One model's pending units, as the coordinator keeps them: how many in all, and the first few in order (as
// many as there are idle workers is enough), so a hand-out costs O(models + workers), not O(pending units).
struct ModelQueue {
  std::string model;
  int64_t remaining = 0;
  std::vector<int64_t> next_units;
};

// `queues` in study order of their models. Each idle worker gets at most one unit; each unit goes to at most
// one worker.
std::vector<Assignment> schedule(const std::vector<ModelQueue>& queues, const std::vector<WorkerView>& workers);
// The same over a flat list of pending units in study order (models ordered by their first unit).
std::vector<Assignment> schedule(const std::vector<PendingUnit>& pending, const std::vector<WorkerView>& workers);

}  // namespace memsweep
