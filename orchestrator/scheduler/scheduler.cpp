#include "orchestrator/scheduler/scheduler.h"

#include <map>

namespace memsweep {

std::vector<Assignment> schedule(const std::vector<PendingUnit>& pending, const std::vector<WorkerView>& workers) {
  // Remaining units per model, in study order; `next` walks each model's list as units are handed out.
  std::vector<std::string> model_order;
  std::map<std::string, std::vector<int64_t>> units_of;
  for (const PendingUnit& u : pending) {
    auto& list = units_of[u.model];
    if (list.empty()) model_order.push_back(u.model);
    list.push_back(u.id);
  }
  std::map<std::string, size_t> next;
  std::map<std::string, int> holders;  // workers holding each model, busy ones included
  for (const WorkerView& w : workers)
    if (!w.loaded_model.empty()) ++holders[w.loaded_model];
  auto remaining = [&](const std::string& model) { return units_of[model].size() - next[model]; };
  auto take = [&](const std::string& model) { return units_of[model][next[model]++]; };

  std::vector<Assignment> assignments;
  std::vector<const WorkerView*> to_move;
  for (const WorkerView& w : workers) {
    if (!w.idle) continue;
    if (!w.loaded_model.empty() && remaining(w.loaded_model) > 0) assignments.push_back({w.rank, take(w.loaded_model)});
    else to_move.push_back(&w);
  }
  for (const WorkerView* w : to_move) {
    const std::string* best = nullptr;
    double best_share = 0;
    for (const std::string& model : model_order) {
      if (remaining(model) == 0) continue;
      const double share = double(remaining(model)) / double(1 + holders[model]);
      if (!best || share > best_share) best = &model, best_share = share;
    }
    if (!best) break;
    if (!w->loaded_model.empty()) --holders[w->loaded_model];
    ++holders[*best];
    assignments.push_back({w->rank, take(*best)});
  }
  return assignments;
}

}  // namespace memsweep
