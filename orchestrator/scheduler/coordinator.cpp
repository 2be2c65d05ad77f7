#include "orchestrator/scheduler/coordinator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <set>

#include "orchestrator/scheduler/scheduler.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace memsweep {

const char* run_outcome_name(RunOutcome outcome) {
  switch (outcome) {
    case RunOutcome::finished: return "finished";
    case RunOutcome::interrupted: return "interrupted";
    case RunOutcome::drained: return "drained";
    case RunOutcome::hung: return "hung";
  }
  return "?";
}

UnitOrder make_unit_order(const Study& study, const UnitRow& row, int attempt) {
  const ModelEntry& model = study.model(row.unit.model);
  const DatasetEntry& dataset = study.dataset(row.unit.dataset);
  UnitOrder o;
  o.unit = row.id;
  o.attempt = attempt;
  o.model_name = model.name;
  o.model_path = model.path;
  o.model_dtype = model.dtype;
  o.model_tokenizer = model.tokenizer;
  o.dataset_name = dataset.name;
  o.dataset_kind = dataset.kind;
  o.dataset_path = dataset.path;
  o.dataset_options = dataset.options;
  o.first = row.unit.first;
  o.count = row.unit.count;
  o.interventions = row.unit.interventions;
  o.batch_size = row.batch_size > 0 ? row.batch_size : study.run.batch_size;
  // An out-of-memory retry halves the unit's batch size; the token budget shrinks in step with it.
  o.token_budget = study.run.token_budget > 0
                       ? std::max<int64_t>(1, study.run.token_budget * o.batch_size / std::max(study.run.batch_size, 1))
                       : 0;
  o.keep_detail = study.store.full_detail;
  return o;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Worker {
  bool greeted = false;
  std::string host, device, loaded_model;
  int64_t unit = 0;       // 0: idle
  int attempt = 0;
  Clock::time_point started;
  bool timed_out = false;  // its attempt was requeued; it stays busy until it answers (or never)
  bool stopped = false;
};

// Pending units per model, each model's in order (requeued ones in front): a hand-out looks at the first few of
// each model only, so it costs O(models + workers) however many units are pending.
class PendingUnits {
 public:
  void push_back(const std::string& model, int64_t id) { queue(model).push_back(id), ++size_; }
  void push_front(const std::string& model, int64_t id) { queue(model).push_front(id), ++size_; }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // Per model (in the order models first appeared), its count and its first `first` units.
  std::vector<ModelQueue> queues(size_t first) const {
    std::vector<ModelQueue> out;
    for (const std::string& model : order_) {
      const std::deque<int64_t>& q = by_model_.at(model);
      if (q.empty()) continue;
      out.push_back({model, int64_t(q.size()), std::vector<int64_t>(q.begin(), q.begin() + int64_t(std::min(first, q.size())))});
    }
    return out;
  }
  void remove(const std::string& model, int64_t id) {  // one of the first units of its model
    std::deque<int64_t>& q = by_model_.at(model);
    q.erase(std::find(q.begin(), q.end(), id));
    --size_;
  }

 private:
  std::deque<int64_t>& queue(const std::string& model) {
    auto [it, added] = by_model_.try_emplace(model);
    if (added) order_.push_back(model);
    return it->second;
  }
  std::vector<std::string> order_;
  std::map<std::string, std::deque<int64_t>> by_model_;
  size_t size_ = 0;
};

class Coordinator {
 public:
  Coordinator(const Study& study, Store& store, int64_t run_id, CoordinatorTransport& transport, const CoordinatorHooks& hooks)
      : study_(study), store_(store), run_id_(run_id), transport_(transport), hooks_(hooks) {
    for (UnitRow& row : store_.units()) {
      if (row.status == UnitStatus::running) throw Error("coordinator: unit " + std::to_string(row.id) + " is still running");
      progress_.total++;
      if (row.status == UnitStatus::done) progress_.done++;
      if (row.status == UnitStatus::failed) progress_.failed++;
      if (row.status == UnitStatus::pending) pending_.push_back(row.unit.model, row.id);
      rows_[row.id] = std::move(row);
    }
    for (int rank : transport_.worker_ranks()) workers_[rank];
    start_ = hooks_.now();
  }

  RunOutcome run() {
    report_progress();
    bool draining = false;
    Clock::time_point drain_deadline;
    while (true) {
      const StopRequest request = hooks_.take_stop_request();
      if (request == StopRequest::terminate) {
        log_info("SIGTERM: requeueing " + std::to_string(busy_count()) + " in-flight units and stopping");
        requeue_in_flight("interrupted");
        return shut_down(RunOutcome::interrupted);
      }
      if (request == StopRequest::drain && !draining) {
        draining = true;
        drain_deadline = hooks_.now() + seconds(study_.run.drain_grace_s);
        log_info("SIGUSR1: no new units; in-flight units have " + std::to_string(study_.run.drain_grace_s) + " s to finish");
      }
      if (draining && (live_busy_count() == 0 || hooks_.now() >= drain_deadline)) {
        requeue_in_flight("drained");
        return shut_down(RunOutcome::drained);
      }
      if (!draining) hand_out();
      check_timeouts();
      if (pending_.empty() && live_busy_count() == 0) return shut_down(RunOutcome::finished);
      if (!pending_.empty() && greeted_live_count() == 0 && all_greeted()) {
        log_error("every worker is hung (past the unit timeout); " + std::to_string(pending_.size()) + " units stay pending");
        return shut_down(RunOutcome::hung);
      }
      if (auto incoming = transport_.poll(hooks_.poll_wait_s)) handle(*incoming);
    }
  }

 private:
  static Clock::duration seconds(double s) { return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); }

  int busy_count() const {
    int n = 0;
    for (const auto& [rank, w] : workers_) n += w.unit != 0;
    return n;
  }
  int live_busy_count() const {
    int n = 0;
    for (const auto& [rank, w] : workers_) n += w.unit != 0 && !w.timed_out;
    return n;
  }
  int greeted_live_count() const {
    int n = 0;
    for (const auto& [rank, w] : workers_) n += w.greeted && !w.timed_out;
    return n;
  }
  bool all_greeted() const {
    for (const auto& [rank, w] : workers_)
      if (!w.greeted) return false;
    return true;
  }

  void hand_out() {
    if (pending_.empty()) return;
    std::vector<WorkerView> views;
    size_t idle = 0;
    for (const auto& [rank, w] : workers_)
      if (w.greeted) {
        views.push_back({rank, w.loaded_model, w.unit == 0});
        idle += w.unit == 0;
      }
    if (idle == 0) return;
    bool started = false;
    for (const Assignment& a : schedule(pending_.queues(idle), views)) {
      started = true;
      Worker& w = workers_.at(a.rank);
      const UnitRow& row = rows_.at(a.unit);
      pending_.remove(row.unit.model, a.unit);
      w.unit = a.unit;
      w.loaded_model = row.unit.model;  // it loads this model now: count it as held when placing the next worker
      w.attempt = store_.start_attempt(run_id_, a.unit, a.rank, w.host, w.device);
      w.started = hooks_.now();
      Message m;
      m.type = MessageType::order;
      m.order = make_order(row, w.attempt);
      transport_.send(a.rank, m);
      log_info("unit " + std::to_string(a.unit) + " (" + row.unit.key() + ") attempt " + std::to_string(w.attempt) + " started on rank " +
               std::to_string(a.rank));
      progress_.running++;
      progress_.running_unit = row.unit.key();
      progress_.pending = int64_t(pending_.size());
    }
    if (started) report_progress();  // what runs now: a single process computes it before it can say anything else
  }

  UnitOrder make_order(const UnitRow& row, int attempt) const { return make_unit_order(study_, row, attempt); }

  void check_timeouts() {
    const Clock::time_point now = hooks_.now();
    for (auto& [rank, w] : workers_) {
      if (w.unit == 0 || w.timed_out || now - w.started < seconds(study_.run.unit_timeout_s)) continue;
      log_warning("unit " + std::to_string(w.unit) + " attempt " + std::to_string(w.attempt) + " on rank " +
                  std::to_string(rank) + " passed the unit timeout (" + std::to_string(study_.run.unit_timeout_s) +
                  " s): requeued under a new attempt; the worker gets nothing more until it answers");
      store_.requeue(w.unit, w.attempt, "timeout");
      pending_.push_front(rows_.at(w.unit).unit.model, w.unit);
      w.timed_out = true;
      progress_.running--;
    }
  }

  // Requeues every live attempt (committed first), then asks its worker to abandon it at the next batch.
  void requeue_in_flight(const std::string& why) {
    for (auto& [rank, w] : workers_) {
      if (w.unit == 0 || w.timed_out) continue;
      store_.requeue(w.unit, w.attempt, why);
      pending_.push_front(rows_.at(w.unit).unit.model, w.unit);
      w.timed_out = true;  // whatever it sends now is stale
      progress_.running--;
      Message cancel;
      cancel.type = MessageType::cancel;
      transport_.send(rank, cancel);
    }
  }

  void handle(const Incoming& incoming) {
    auto found = workers_.find(incoming.rank);
    if (found == workers_.end()) throw Error("coordinator: a message from rank " + std::to_string(incoming.rank) + ", which is no worker");
    Worker& w = found->second;
    const Message& m = incoming.message;
    if (m.type == MessageType::hello) {
      w.greeted = true;
      w.host = m.hello.host;
      w.device = m.hello.device;
      log_info("rank " + std::to_string(incoming.rank) + " on " + w.host + " works on " + w.device);
      return;
    }
    if (m.type != MessageType::report) throw Error("coordinator: rank " + std::to_string(incoming.rank) + " sent an unexpected message");
    const UnitReport& r = m.report;
    w.loaded_model = r.loaded_model;
    const bool current = w.unit == r.unit && w.attempt == r.attempt && !w.timed_out;
    w.unit = 0;
    w.timed_out = false;
    if (!current) {
      log_info("discarding a stale result: unit " + std::to_string(r.unit) + " attempt " + std::to_string(r.attempt) +
               " from rank " + std::to_string(incoming.rank));
      return;
    }
    progress_.running--;
    UnitRow& row = rows_.at(r.unit);
    if (r.cancelled) {  // it stopped on its own (it saw SIGTERM, or a drain passed its grace): not a failure
      store_.requeue(r.unit, r.attempt, "cancelled by its worker");
      pending_.push_front(rows_.at(r.unit).unit.model, r.unit);
    } else if (r.ok) {
      char took[32];
      std::snprintf(took, sizeof took, "%.2f s", r.seconds);
      log_info("unit " + std::to_string(r.unit) + " done in " + took + " on rank " + std::to_string(incoming.rank));
      if (store_.record_done(r.unit, r.attempt, r.results, r.seconds)) {
        progress_.done++;
        progress_.done_this_run++;
      }
    } else {
      row.failures++;
      const bool final = row.failures >= study_.run.attempts;
      const int batch = row.batch_size > 0 ? row.batch_size : study_.run.batch_size;
      const int next_batch = r.out_of_memory && batch > 1 ? batch / 2 : 0;
      if (next_batch) row.batch_size = next_batch;
      store_.record_failure(r.unit, r.attempt, r.error, final, next_batch);
      log_warning("unit " + std::to_string(r.unit) + " (" + row.unit.key() + ") attempt " + std::to_string(r.attempt) +
                  " failed: " + r.error + (final ? " — no attempts left, recorded failed" : " — will retry") +
                  (next_batch ? " with batch size " + std::to_string(next_batch) : ""));
      if (final) progress_.failed++;
      else pending_.push_back(row.unit.model, r.unit);
    }
    progress_.pending = int64_t(pending_.size());
    report_progress();
  }

  RunOutcome shut_down(RunOutcome outcome) {
    // A worker computing a requeued unit was sent a cancel and answers at its next batch boundary; wait for it so
    // the job ends cleanly (everything is committed already, so a SIGKILL meanwhile loses nothing).
    const Clock::time_point give_up = hooks_.now() + seconds(outcome == RunOutcome::hung ? 0 : study_.run.cancel_wait_s);
    while (busy_count() > 0 && hooks_.now() < give_up && outcome != RunOutcome::finished)
      if (auto incoming = transport_.poll(hooks_.poll_wait_s)) {
        if (incoming->message.type == MessageType::report) {
          Worker& w = workers_.at(incoming->rank);
          w.unit = 0;
          w.timed_out = false;
        }
      }
    for (auto& [rank, w] : workers_) {
      if (w.unit != 0) continue;
      Message stop;
      stop.type = MessageType::stop;
      transport_.send(rank, stop);
      w.stopped = true;
    }
    report_progress();
    if (busy_count() > 0) {
      log_error(std::to_string(busy_count()) + " worker(s) never answered: the job must be aborted");
      return RunOutcome::hung;
    }
    return outcome;
  }

  void report_progress() {
    progress_.pending = int64_t(pending_.size());
    progress_.elapsed_s = std::chrono::duration<double>(hooks_.now() - start_).count();
    hooks_.on_progress(progress_);
  }

  const Study& study_;
  Store& store_;
  int64_t run_id_;
  CoordinatorTransport& transport_;
  const CoordinatorHooks& hooks_;
  std::map<int64_t, UnitRow> rows_;
  PendingUnits pending_;
  std::map<int, Worker> workers_;
  Progress progress_;
  Clock::time_point start_;
};

}  // namespace

RunOutcome coordinate(const Study& study, Store& store, int64_t run_id, CoordinatorTransport& transport,
                      const CoordinatorHooks& hooks) {
  return Coordinator(study, store, run_id, transport, hooks).run();
}

bool stop_idle_workers(CoordinatorTransport& transport, double wait_s) {
  std::set<int> silent;
  for (int rank : transport.worker_ranks()) {
    Message stop;
    stop.type = MessageType::stop;
    transport.send(rank, stop);
    silent.insert(rank);
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  while (!silent.empty() && std::chrono::steady_clock::now() < give_up)
    if (auto incoming = transport.poll(0.1)) silent.erase(incoming->rank);
  return silent.empty();
}

}  // namespace memsweep
