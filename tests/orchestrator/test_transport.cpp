// Messages between ranks (round trip, strict decoding), device choice over a table of node layouts, and the
// single-process transport driving the coordinator with a fake runner.
#define BOOST_TEST_MODULE test_transport
#include <boost/test/unit_test.hpp>

#include "orchestrator/transport/messages.h"
#include "orchestrator/transport/transport.h"
#include "orchestrator/worker_loop/device_choice.h"
#include "worker/base/error.h"

namespace {

using namespace memsweep;

BOOST_AUTO_TEST_CASE(messages_round_trip) {
  Message order;
  order.type = MessageType::order;
  order.order.unit = 12;
  order.order.attempt = 3;
  order.order.model_name = "pythia";
  order.order.dataset_options = {{"prefix", 32}};
  order.order.first = 256;
  order.order.count = 128;
  order.order.interventions = {"baseline", "short_circuit:3"};
  order.order.batch_size = 4;
  order.order.token_budget = 4096;
  const Message o = decode_message(encode(order));
  BOOST_TEST(o.order.token_budget == 4096);
  BOOST_TEST(o.order.unit == 12);
  BOOST_TEST(o.order.dataset_options.at("prefix") == 32);
  BOOST_TEST(o.order.interventions.size() == 2u);
  BOOST_TEST(encode(o) == encode(order));

  Message report;
  report.type = MessageType::report;
  report.report.ok = true;
  report.report.results.push_back({"short_circuit:3", {{"examples", 2}}, {{5, {{"exact_match", 1}}, {{"tokens", {1}}}}}});
  const Message r = decode_message(encode(report));
  BOOST_TEST(r.report.results.at(0).intervention == "short_circuit:3");
  BOOST_TEST(r.report.results.at(0).examples.at(0).index == 5);
  BOOST_TEST(encode(r) == encode(report));

  Message cancelled;
  cancelled.type = MessageType::report;
  cancelled.report.cancelled = true;
  BOOST_TEST(decode_message(encode(cancelled)).report.cancelled);
  Message cancel;
  cancel.type = MessageType::cancel;
  BOOST_TEST(encode(cancel) == R"({"type":"cancel"})");
  BOOST_TEST((decode_message(encode(cancel)).type == MessageType::cancel));
}

BOOST_AUTO_TEST_CASE(malformed_messages_name_what_is_wrong) {
  Message order;
  order.type = MessageType::order;
  order.order.count = 1;
  nlohmann::json good = nlohmann::json::parse(encode(order));
  struct Case {
    std::string bytes, message;
  };
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = good;
    if (value.is_discarded()) j.erase(key);
    else j[key] = value;
    return j.dump();
  };
  const std::vector<Case> cases = {
      {"{", "malformed message: not JSON"},
      {"[]", "malformed message: the message is not an object"},
      {R"({"type":"gossip"})", "malformed message: unknown type 'gossip'"},
      {R"({"type":"stop","extra":1})", "malformed message: the message has an unknown field 'extra'"},
      {with("unit", nlohmann::json::value_t::discarded), "malformed message: the message has no field 'unit'"},
      {with("unit", "12"), "malformed message: the message field 'unit' has the wrong type (string)"},
      {with("attempt", 1e12), "the message field 'attempt' has the wrong type (number)"},
      {with("attempt", int64_t(1) << 40), "the message field 'attempt' is out of range"},
      {with("interventions", {1}), "the message field 'interventions' has the wrong type (array)"},
      {with("count", 0), "the order has first < 0, count < 1, batch_size < 1 or token_budget < 0"},
      {with("token_budget", -5), "the order has first < 0, count < 1, batch_size < 1 or token_budget < 0"},
      {with("dataset_options", 3), "the order's field 'dataset_options' is not an object"},
      {R"({"type":"report","unit":1,"attempt":1,"ok":true,"error":"","out_of_memory":false,"cancelled":false,"seconds":1,"loaded_model":"m","results":[{"intervention":"baseline","totals":{}}]})",
       "malformed shard result"},
      {R"({"type":"report","unit":1,"attempt":1,"ok":true,"error":"","out_of_memory":false,"cancelled":false,"seconds":1,"loaded_model":"m","results":[{"totals":{},"examples":[]}]})",
       "malformed shard result: no intervention name"},
      {R"({"type":"report","unit":1,"attempt":1,"ok":true,"error":"","out_of_memory":false,"cancelled":false,"seconds":1,"loaded_model":"m","results":[{"intervention":3,"totals":{},"examples":[]}]})",
       "malformed shard result: no intervention name"},
      // found by fuzz_messages: a float index was converted to int64 with undefined behaviour (1e300) or truncated
      {R"({"type":"report","unit":1,"attempt":1,"ok":true,"error":"","out_of_memory":false,"cancelled":false,"seconds":1,"loaded_model":"m","results":[{"intervention":"baseline","totals":{},"examples":[{"index":1e300,"values":{},"detail":null}]}]})",
       "malformed shard result: an example's index is not an integer >= 0 (1e+300)"},
      {R"({"type":"report","unit":1,"attempt":1,"ok":true,"error":"","out_of_memory":false,"cancelled":false,"seconds":1,"loaded_model":"m","results":[{"intervention":"baseline","totals":{},"examples":[{"index":2.5,"values":{},"detail":null}]}]})",
       "malformed shard result: an example's index is not an integer >= 0"},
  };
  for (const Case& c : cases) {
    try {
      decode_message(c.bytes);
      BOOST_ERROR("accepted: " + c.bytes);
    } catch (const Error& e) {
      BOOST_TEST(std::string(e.what()).find(c.message) != std::string::npos, e.what() << " / expected " << c.message);
    }
  }
}

struct DeviceCase {
  const char* layout;
  int rank;
  std::vector<int> node_ranks;
  int world_size, visible;
  const char* cuda_visible_devices;  // nullptr: unset
  const char* policy;
  const char* expected;
  int devices_per_worker = 1;
};

BOOST_AUTO_TEST_CASE(device_choice_table) {
  const std::vector<DeviceCase> cases = {
      {"one process, no CUDA", 0, {0}, 1, 0, nullptr, "auto", "cpu"},
      {"one process, one GPU", 0, {0}, 1, 1, nullptr, "auto", "cuda:0"},
      {"node 0 of 4 GPUs: rank 0 holds none, rank 1 gets the first", 1, {0, 1, 2, 3, 4}, 5, 4, nullptr, "auto", "cuda:0"},
      {"node 0 of 4 GPUs: rank 4", 4, {0, 1, 2, 3, 4}, 5, 4, nullptr, "auto", "cuda:3"},
      {"second node: ranks 5..8 on 4 GPUs", 7, {5, 6, 7, 8}, 9, 4, nullptr, "auto", "cuda:2"},
      {"more workers than GPUs wrap around", 6, {0, 1, 2, 3, 4, 5, 6}, 7, 4, nullptr, "auto", "cuda:1"},
      {"one GPU per task (SLURM --gpus-per-task=1)", 3, {0, 1, 2, 3}, 4, 1, "2", "auto", "cuda:0"},
      {"CUDA_VISIBLE_DEVICES narrows to two", 2, {0, 1, 2}, 3, 2, "4,5", "auto", "cuda:1"},
      {"CUDA_VISIBLE_DEVICES empty hides GPUs", 1, {0, 1}, 2, 0, "", "auto", "cpu"},
      {"CUDA_VISIBLE_DEVICES=-1", 1, {0, 1}, 2, 2, "-1", "auto", "cpu"},
      {"cpu asked", 1, {0, 1}, 2, 8, nullptr, "cpu", "cpu"},
      {"node ranks in any order", 3, {3, 0, 2, 1}, 4, 8, nullptr, "auto", "cuda:2"},
      {"two GPUs per worker: worker 0 starts at 0", 1, {0, 1, 2, 3, 4}, 5, 8, nullptr, "auto", "cuda:0", 2},
      {"two GPUs per worker: worker 3 starts at 6", 4, {0, 1, 2, 3, 4}, 5, 8, nullptr, "auto", "cuda:6", 2},
      {"two GPUs per worker, more workers than groups wrap", 5, {0, 1, 2, 3, 4, 5}, 6, 8, nullptr, "auto", "cuda:0", 2},
      {"three per worker on 8: whole groups only (0, 3)", 3, {0, 1, 2, 3}, 4, 8, nullptr, "auto", "cuda:0", 3},
      {"two per task (SLURM --gpus-per-task=2)", 2, {0, 1, 2}, 3, 2, "6,7", "auto", "cuda:0", 2},
      {"two per worker, cpu", 1, {0, 1}, 2, 0, nullptr, "auto", "cpu", 2},
  };
  for (const DeviceCase& c : cases) {
    const int index = local_worker_index(c.rank, c.node_ranks, c.world_size);
    BOOST_TEST(choose_device(c.policy, index, c.visible, c.cuda_visible_devices, c.devices_per_worker) == c.expected, c.layout);
  }
  BOOST_CHECK_THROW(local_worker_index(9, {0, 1}, 4), Error);
  BOOST_CHECK_EXCEPTION(choose_device("auto", 0, 1, nullptr, 2), Error, [](const Error& e) {
    return std::string(e.what()).find("devices_per_worker = 2, but this rank sees 1 GPU(s)") != std::string::npos;
  });
  BOOST_CHECK_THROW(choose_device("gpu", 0, 1, nullptr), Error);
}

BOOST_AUTO_TEST_CASE(intra_op_threads_share_the_cores) {
  BOOST_TEST(intra_op_threads(16, 4, nullptr) == 4);
  BOOST_TEST(intra_op_threads(2, 2, nullptr) == 1);
  BOOST_TEST(intra_op_threads(2, 3, nullptr) == 1);  // oversubscribed: never 0
  BOOST_TEST(intra_op_threads(16, 4, "2") == 2);      // the user's OMP_NUM_THREADS wins
  BOOST_TEST(intra_op_threads(16, 4, "") == 4);
  BOOST_TEST(intra_op_threads(16, 4, "many") == 4);   // not a number: ignored
  BOOST_TEST(workers_on_node({0, 1, 2}, 3) == 2);    // rank 0 schedules
  BOOST_TEST(workers_on_node({3, 4}, 5) == 2);       // a second node: every rank works
  BOOST_TEST(workers_on_node({0}, 1) == 1);          // one process does both
}

class CountingRunner : public UnitRunner {
 public:
  std::string device() const override { return "cpu"; }
  UnitReport run(const UnitOrder& order, const StopCheck&) override {
    UnitReport r;
    r.unit = order.unit, r.attempt = order.attempt, r.ok = true, r.loaded_model = order.model_name;
    ++runs;
    return r;
  }
  int runs = 0;
};

// A WorkerTransport over in-memory queues: what serve_worker sends and receives.
class QueueWorkerTransport : public WorkerTransport {
 public:
  void send(const Message& m) override { sent.push_back(decode_message(encode(m))); }
  Message receive() override {
    Message m = inbox.front();
    inbox.erase(inbox.begin());
    return decode_message(encode(m));
  }
  bool cancel_arrived() override { return false; }
  std::vector<Message> sent, inbox;
};

BOOST_AUTO_TEST_CASE(worker_loop_hello_orders_stop) {
  QueueWorkerTransport transport;
  Message order;
  order.type = MessageType::order;
  order.order.unit = 4, order.order.attempt = 2, order.order.count = 1, order.order.model_name = "m";
  Message stop;
  stop.type = MessageType::stop;
  transport.inbox = {order, order, stop};
  CountingRunner runner;
  serve_worker(transport, runner, "node7");
  BOOST_TEST(runner.runs == 2);
  BOOST_REQUIRE(transport.sent.size() == 3u);
  BOOST_TEST(transport.sent[0].hello.host == "node7");
  BOOST_TEST(transport.sent[2].report.attempt == 2);
}

BOOST_AUTO_TEST_CASE(local_transport_runs_an_order_on_the_next_poll) {
  CountingRunner runner;
  LocalTransport local(runner, "here");
  BOOST_TEST(local.worker_ranks() == std::vector<int>{0});
  BOOST_TEST(int(local.poll(0)->message.type) == int(MessageType::hello));
  BOOST_TEST(!local.poll(0));
  Message order;
  order.type = MessageType::order;
  order.order.unit = 9;
  local.send(0, order);
  BOOST_TEST(local.poll(0)->message.report.unit == 9);
  BOOST_TEST(runner.runs == 1);
}

}  // namespace
