#pragma once
// What rank 0 and the workers say to each other, and its JSON encoding. Decoding is strict: a missing or
// mistyped field, an unknown field or message type is an Error naming it (messages cross process
// boundaries, and are fuzzed).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "worker/tasks/results.h"

namespace memsweep {

// Rank 0 -> worker: run one attempt of a unit.
struct UnitOrder {
  int64_t unit = 0;
  int attempt = 0;
  std::string model_name, model_path, model_dtype, model_tokenizer;
  std::string dataset_name, dataset_kind, dataset_path;
  nlohmann::json dataset_options = nlohmann::json::object();
  int64_t first = 0, count = 0;
  std::vector<std::string> interventions;  // canonical names
  int batch_size = 8;
  int64_t token_budget = 0;  // padded tokens per forward pass; 0: only batch_size limits a batch
  bool keep_detail = false;  // the store keeps each example's detail ([store] detail = "full"): else it is not sent
};

// Worker -> rank 0: the outcome of an attempt.
struct UnitReport {
  int64_t unit = 0;
  int attempt = 0;
  bool ok = false;
  std::string error;           // when !ok
  bool out_of_memory = false;  // the error was an allocation failure: retry with half the batch
  bool cancelled = false;      // abandoned between batches (SIGTERM, or a cancel from rank 0): requeue, no failure
  double seconds = 0;
  std::string loaded_model;    // what the worker holds now
  std::vector<ShardResult> results;  // one per intervention, each naming it, when ok
};

// Worker -> rank 0, once at start: where it runs.
struct WorkerHello {
  std::string host, device;
};

// cancel: rank 0 -> a busy worker: abandon the unit at the next batch boundary and report it cancelled.
enum class MessageType { order, report, hello, stop, cancel };

struct Message {
  MessageType type = MessageType::stop;
  UnitOrder order;
  UnitReport report;
  WorkerHello hello;
};

std::string encode(const Message& message);
Message decode_message(const std::string& bytes);

}  // namespace memsweep
