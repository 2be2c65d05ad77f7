#include "orchestrator/scheduler/scheduler.h"

#include <map>

namespace memsweep {

std::vector<Assignment> schedule(const std::vector<ModelQueue>& queues, const std::vector<WorkerView>& workers) {
  std::map<std::string, const ModelQueue*> queue_of;
  for (const ModelQueue& q : queues) queue_of[q.model] = &q;
  std::map<std::string, size_t> taken;
  std::map<std::string, int> holders;  // workers holding each model, busy ones included
  for (const WorkerView& w : workers)
    if (!w.loaded_model.empty()) ++holders[w.loaded_model];
  auto remaining = [&](const std::string& model) -> int64_t {
    auto found = queue_of.find(model);
    if (found == queue_of.end()) return 0;
    // Units beyond the listed ones count for the shares, but only listed ones can be handed out.
    return taken[model] < found->second->next_units.size() ? found->second->remaining - int64_t(taken[model]) : 0;
  };
  auto take = [&](const std::string& model) { return queue_of.at(model)->next_units[taken[model]++]; };

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
    for (const ModelQueue& q : queues) {
      if (remaining(q.model) == 0) continue;
      const double share = double(remaining(q.model)) / double(1 + holders[q.model]);
      if (!best || share > best_share) best = &q.model, best_share = share;
    }
    if (!best) break;
    if (!w->loaded_model.empty()) --holders[w->loaded_model];
    ++holders[*best];
    assignments.push_back({w->rank, take(*best)});
  }
  return assignments;
}

std::vector<Assignment> schedule(const std::vector<PendingUnit>& pending, const std::vector<WorkerView>& workers) {
  std::vector<ModelQueue> queues;
  std::map<std::string, size_t> index;
  for (const PendingUnit& u : pending) {
    auto [it, added] = index.emplace(u.model, queues.size());
    if (added) queues.push_back({u.model, 0, {}});
    ModelQueue& q = queues[it->second];
    q.remaining++;
    q.next_units.push_back(u.id);
  }
  return schedule(queues, workers);
}

}  // namespace memsweep
