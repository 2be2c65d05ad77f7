#pragma once
// How rank 0 reaches its workers, and how a worker reaches rank 0. Interfaces, so the coordinator runs the
// same over MPI (mpi_transport.cpp, the only file that includes mpi.h), in one process (LocalTransport) and in
// tests over fakes that lose a worker, hang one or answer late.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/transport/messages.h"

namespace memsweep {

struct Incoming {
  int rank = 0;
  Message message;
};

class CoordinatorTransport {
 public:
  virtual ~CoordinatorTransport() = default;
  virtual std::vector<int> worker_ranks() const = 0;
  virtual void send(int rank, const Message& message) = 0;
  // A message from any worker when one arrives within `wait_s`, else nothing. Waits without spinning a core.
  virtual std::optional<Incoming> poll(double wait_s) = 0;
  // Ends every rank at once (a worker hangs: a clean shutdown would wait for it forever).
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

class WorkerTransport {
 public:
  virtual ~WorkerTransport() = default;
  virtual void send(const Message& message) = 0;
  // Waits for rank 0's next message (an order, stop or cancel).
  virtual Message receive() = 0;
  // While a unit runs: whether rank 0 has sent a cancel (consumed). Never blocks.
  virtual bool cancel_arrived() = 0;
};

// Asked between batches: true abandons the unit (its report says cancelled).
using StopCheck = std::function<bool()>;

// What runs a unit on a worker: the real one loads models (worker_loop), tests use fakes. Never throws for a
// failing unit: failures are reports.
class UnitRunner {
 public:
  virtual ~UnitRunner() = default;
  virtual std::string device() const = 0;
  virtual UnitReport run(const UnitOrder& order, const StopCheck& stop) = 0;
};

// One process: rank 0 is also the worker; an order runs when the coordinator next polls, and stops between
// batches when `stop` says so (the coordinator cannot send a cancel while the unit holds the process).
class LocalTransport : public CoordinatorTransport {
 public:
  LocalTransport(UnitRunner& runner, std::string host, StopCheck stop = [] { return false; })
      : runner_(runner), host_(std::move(host)), stop_(std::move(stop)) {}
  std::vector<int> worker_ranks() const override { return {0}; }
  void send(int rank, const Message& message) override;
  std::optional<Incoming> poll(double wait_s) override;
  [[noreturn]] void abort(int exit_code) override;

 private:
  UnitRunner& runner_;
  std::string host_;
  StopCheck stop_;
  bool greeted_ = false;
  std::optional<UnitOrder> order_;
};

// A worker rank's loop: says hello, then runs orders until stop. A unit stops between batches when rank 0 sends
// a cancel or `local_stop` says so (e.g. this process saw SIGTERM).
void serve_worker(WorkerTransport& transport, UnitRunner& runner, const std::string& host,
                  const StopCheck& local_stop = [] { return false; });

}  // namespace memsweep
