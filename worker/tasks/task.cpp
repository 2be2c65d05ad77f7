#include "worker/tasks/task.h"

#include <algorithm>

#include "worker/base/error.h"
#include "worker/tasks/kinds.h"

namespace memsweep {

void RunOptions::between_batches(int64_t done, int64_t total, const char* what) const {
  if (progress) progress(done, total, what);
  if (done < total && stop && stop()) throw UnitCancelled();
}

int64_t RunOptions::rows_per_batch(int64_t tokens_per_row) const { return rows_per_pass(batch_size, token_budget, tokens_per_row); }

std::vector<ShardResult> named_results(const std::vector<Intervention>& interventions) {
  std::vector<ShardResult> results(interventions.size());
  for (size_t k = 0; k < interventions.size(); ++k) results[k].intervention = interventions[k].name();
  return results;
}

void apply_intervention(CausalLM& model, const Intervention& intervention) {
  model.clear_interventions();
  model.set_attention_mode(intervention.short_circuit, AttentionMode::short_circuit);
  model.set_attention_mode(intervention.zero_attention, AttentionMode::zero_attention);
}

namespace {
struct TaskKind {
  const char* kind;
  std::unique_ptr<Task> (*open)(const DatasetSpec&, const TaskContext&);
};
// One line per kind; each kind's file declares its open function in kinds.h.
const TaskKind kKinds[] = {
    {"memorization", open_memorization_task},
    {"divergence", open_divergence_task},
    {"piqa", open_benchmark_task},
    {"arc_easy", open_benchmark_task},
    {"arc_challenge", open_benchmark_task},
    {"hellaswag", open_benchmark_task},
    {"winogrande", open_benchmark_task},
    {"sciq", open_benchmark_task},
    {"openbookqa", open_benchmark_task},
    {"boolq", open_benchmark_task},
    {"lambada_openai", open_benchmark_task},
    {"multiple_choice", open_benchmark_task},
    {"rolling_loglikelihood", open_benchmark_task},
};
}  // namespace

std::unique_ptr<Task> open_task(const DatasetSpec& spec, const TaskContext& context) {
  std::string known;
  for (const auto& k : kKinds) {
    if (spec.kind == k.kind) return k.open(spec, context);
    known += (known.empty() ? "" : ", ") + std::string(k.kind);
  }
  throw Error(dataset_on_model(spec, context) + ": unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace memsweep
