#include <cstdlib>

#include "orchestrator/transport/transport.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace memsweep {

void LocalTransport::send(int rank, const Message& message) {
  if (rank != 0) throw Error("local transport: there is no rank " + std::to_string(rank));
  if (message.type == MessageType::order) order_ = message.order;
}

std::optional<Incoming> LocalTransport::poll(double) {
  if (!greeted_) {
    greeted_ = true;
    Message hello;
    hello.type = MessageType::hello;
    hello.hello = {host_, runner_.device()};
    return Incoming{0, hello};
  }
  if (!order_) return std::nullopt;
  Message report;
  report.type = MessageType::report;
  report.report = runner_.run(*order_, stop_);
  order_.reset();
  return Incoming{0, report};
}

void LocalTransport::abort(int exit_code) { std::_Exit(exit_code); }

void serve_worker(WorkerTransport& transport, UnitRunner& runner, const std::string& host, const StopCheck& local_stop) {
  Message hello;
  hello.type = MessageType::hello;
  hello.hello = {host, runner.device()};
  transport.send(hello);
  while (true) {
    Message message = transport.receive();
    if (message.type == MessageType::stop) return;
    if (message.type == MessageType::cancel) continue;  // its unit ended before the cancel arrived
    if (message.type != MessageType::order) throw Error("worker: rank 0 sent a message that is not an order or stop");
    Message report;
    report.type = MessageType::report;
    report.report = runner.run(message.order, [&] { return local_stop() || transport.cancel_arrived(); });
    transport.send(report);
  }
}

}  // namespace memsweep
