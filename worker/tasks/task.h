#pragma once
// A dataset as something a model can be evaluated on, shard by shard, under a list of interventions.
// Kinds (memorization, divergence, benchmark tasks) are created by open_task() from a DatasetSpec.
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "worker/base/intervention.h"
#include "worker/model/model.h"
#include "worker/tasks/dataset.h"
#include "worker/tasks/results.h"

namespace memsweep {

struct RunOptions {
  int batch_size = 8;      // rows per forward pass (at most)
  int64_t token_budget = 0;  // padded tokens per forward pass (at most); 0: no limit but batch_size
  // Reuse the activations below an intervention's first block across the interventions of a call.
  bool reuse_lower_layers = true;
  // Asked before each batch: true abandons the call with UnitCancelled (preemption, a drain past its grace).
  std::function<bool()> stop;
  // Told before each batch and at the end how much of the call is done: (done, total, what is counted: "rows",
  // "requests"). For progress lines (eval); never changes what is computed.
  std::function<void(int64_t done, int64_t total, const char* what)> progress;
  // Between two batches: reports progress, then throws UnitCancelled when `stop` says so.
  void between_batches(int64_t done, int64_t total, const char* what) const;
  // Rows per forward pass for rows of `tokens_per_row` tokens: batch_size, fewer where token_budget binds, >= 1.
  int64_t rows_per_batch(int64_t tokens_per_row) const;
};

// Thrown between batches when RunOptions::stop says so; nothing of the call is kept.
class UnitCancelled : public std::runtime_error {
 public:
  UnitCancelled() : std::runtime_error("cancelled between batches") {}
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string kind() const = 0;
  virtual int64_t num_examples() const = 0;
  // One ShardResult per intervention, in order, each naming its intervention (Intervention::name()). The model's
  // attention modes are changed and left cleared.
  // Grouping into batches depends only on (first, count, options), never on the number of ranks.
  virtual std::vector<ShardResult> run(CausalLM& model, int64_t first, int64_t count,
                                       const std::vector<Intervention>& interventions, const RunOptions& options) = 0;
};

// Reads and validates the dataset through dataset.h's readers (errors start with dataset_on_model() and name the
// file and line). Error for an unknown kind.
std::unique_ptr<Task> open_task(const DatasetSpec& spec, const TaskContext& context);

// One empty ShardResult per intervention, named for it: what a Task's run() fills.
std::vector<ShardResult> named_results(const std::vector<Intervention>& interventions);

// Sets exactly this intervention's modes on the model (every other block normal).
void apply_intervention(CausalLM& model, const Intervention& intervention);

}  // namespace memsweep
