#pragma once
// A fake cluster for the coordinator: worker ranks that run units at once (deterministic results), fail,
// run out of memory, hang or answer late, on a fake clock that advances as the coordinator polls.
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>

#include "orchestrator/transport/transport.h"
#include "worker/base/error.h"

namespace memsweep_test {

using namespace memsweep;

// Results that depend only on the unit's examples and interventions: equal whatever ran them.
inline std::vector<ShardResult> deterministic_results(const UnitOrder& order) {
  std::vector<ShardResult> results;
  for (size_t i = 0; i < order.interventions.size(); ++i) {
    ShardResult r;
    r.intervention = order.interventions[i];
    const double weight = double(std::hash<std::string>{}(order.dataset_name + order.interventions[i]) % 97) / 97.0;
    r.totals["examples"] = double(order.count);
    for (int64_t e = order.first; e < order.first + order.count; ++e) {
      const double value = double((e * 7 + int64_t(i)) % 5) * weight;
      r.totals["exact_match"] += value;
      r.examples.push_back({e, {{"exact_match", value}}, {}, nlohmann::json{{"intervention", order.interventions[i]}}});
    }
    results.push_back(r);
  }
  return results;
}

enum class Behaviour { work, fail_once, out_of_memory_once, hang, late };

struct FakeClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  void advance(double s) { now += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s)); }
};

class FakeCluster : public CoordinatorTransport {
 public:
  FakeCluster(FakeClock& clock, std::map<int, Behaviour> behaviours) : clock_(clock), behaviours_(std::move(behaviours)) {
    for (const auto& [rank, b] : behaviours_) inbox_.push_back({rank, hello()});
  }
  std::vector<int> worker_ranks() const override {
    std::vector<int> ranks;
    for (const auto& [rank, b] : behaviours_) ranks.push_back(rank);
    return ranks;
  }
  void send(int rank, const Message& m) override {
    if (m.type == MessageType::stop) {
      stopped.push_back(rank);
      return;
    }
    if (m.type == MessageType::cancel) {  // fake workers answer at once or never: nothing left to abandon
      cancelled.push_back(rank);
      return;
    }
    orders.push_back({rank, m.order});
    loads[rank] += m.order.model_name != loaded_[rank];
    Behaviour& b = behaviours_.at(rank);
    UnitReport r;
    r.unit = m.order.unit;
    r.attempt = m.order.attempt;
    r.loaded_model = loaded_[rank] = m.order.model_name;
    r.ok = true;
    switch (b) {
      case Behaviour::hang: return;  // never answers
      case Behaviour::late:  // answers after late_s, then works normally
        r.results = deterministic_results(m.order);
        deliver_after(late_s, {rank, report(r)});
        b = Behaviour::work;
        return;
      case Behaviour::fail_once:
        r.ok = false, r.error = "bad row in " + m.order.dataset_name;
        b = Behaviour::work;
        break;
      case Behaviour::out_of_memory_once:
        r.ok = false, r.error = "CUDA out of memory", r.out_of_memory = true;
        b = Behaviour::work;
        break;
      case Behaviour::work:
        r.results = deterministic_results(m.order);
        break;
    }
    deliver_after(work_s, {rank, report(r)});
  }
  std::optional<Incoming> poll(double wait_s) override {
    if (before_poll) before_poll();
    auto due = delayed_.end();
    for (auto it = delayed_.begin(); it != delayed_.end(); ++it)
      if (it->first <= clock_.now && (due == delayed_.end() || it->first < due->first)) due = it;
    if (due != delayed_.end()) {
      inbox_.push_back(due->second);
      delayed_.erase(due);
    }
    if (inbox_.empty()) {
      clock_.advance(wait_s);
      return std::nullopt;
    }
    Incoming next = inbox_.front();
    inbox_.pop_front();
    clock_.advance(0.01);
    return next;
  }
  [[noreturn]] void abort(int) override { throw Error("fake abort"); }

  std::vector<std::pair<int, UnitOrder>> orders;
  std::map<int, int> loads;  // model loads per rank
  std::vector<int> stopped, cancelled;
  std::function<void()> before_poll;
  double work_s = 5, late_s = 35;  // fake seconds a unit takes; when a late worker answers

 private:
  static Message hello() {
    Message m;
    m.type = MessageType::hello;
    m.hello = {"fakehost", "cpu"};
    return m;
  }
  static Message report(const UnitReport& r) {
    Message m;
    m.type = MessageType::report;
    m.report = r;
    return m;
  }
  void deliver_after(double s, Incoming incoming) {
    delayed_.push_back({clock_.now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s)),
                        std::move(incoming)});
  }
  FakeClock& clock_;
  std::map<int, Behaviour> behaviours_;
  std::map<int, std::string> loaded_;
  std::deque<Incoming> inbox_;
  std::vector<std::pair<std::chrono::steady_clock::time_point, Incoming>> delayed_;
};

}  // namespace memsweep_test
