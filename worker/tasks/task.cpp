#include "worker/tasks/task.h"

#include "worker/base/error.h"
#include "worker/tasks/kinds.h"

namespace memsweep {

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
};
}  // namespace

std::unique_ptr<Task> open_task(const DatasetSpec& spec, const TaskContext& context) {
  std::string known;
  for (const auto& k : kKinds) {
    if (spec.kind == k.kind) return k.open(spec, context);
    known += (known.empty() ? "" : ", ") + std::string(k.kind);
  }
  throw Error("dataset '" + spec.name + "': unknown kind '" + spec.kind + "' (known: " + known + ")");
}

}  // namespace memsweep
