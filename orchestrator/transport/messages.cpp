#include "orchestrator/transport/messages.h"

#include <set>

#include "worker/base/error.h"

namespace memsweep {

namespace {

const char* type_name(MessageType type) {
  switch (type) {
    case MessageType::order: return "order";
    case MessageType::report: return "report";
    case MessageType::hello: return "hello";
    case MessageType::stop: return "stop";
    case MessageType::cancel: return "cancel";
  }
  return "?";
}

// Reads fields of one JSON object, checking types; finish() refuses fields nobody read.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& json, std::string what) : json_(json), what_(std::move(what)) {
    if (!json_.is_object()) throw Error("malformed message: " + what_ + " is not an object");
  }
  const nlohmann::json& at(const std::string& key) {
    read_.insert(key);
    auto found = json_.find(key);
    if (found == json_.end()) throw Error("malformed message: " + what_ + " has no field '" + key + "'");
    return *found;
  }
  template <typename T>
  T get(const std::string& key) {
    const nlohmann::json& v = at(key);
    bool ok = false;
    if constexpr (std::is_same_v<T, bool>) ok = v.is_boolean();
    else if constexpr (std::is_integral_v<T>) ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<T>) ok = v.is_number();
    else if constexpr (std::is_same_v<T, std::string>) ok = v.is_string();
    else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      ok = v.is_array();
      for (const auto& item : v) ok = ok && item.is_string();
    }
    if (!ok) throw Error("malformed message: " + what_ + " field '" + key + "' has the wrong type (" + v.type_name() + ")");
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(std::numeric_limits<T>::max())
                                 : (v.get<int64_t>() < int64_t(std::numeric_limits<T>::min()) ||
                                    v.get<int64_t>() > int64_t(std::numeric_limits<T>::max())))
        throw Error("malformed message: " + what_ + " field '" + key + "' is out of range");
    }
    return v.get<T>();
  }
  void finish() const {
    for (const auto& item : json_.items())
      if (!read_.count(item.key())) throw Error("malformed message: " + what_ + " has an unknown field '" + item.key() + "'");
  }

 private:
  const nlohmann::json& json_;
  std::string what_;
  std::set<std::string> read_;
};

}  // namespace

std::string encode(const Message& m) {
  nlohmann::json json = {{"type", type_name(m.type)}};
  if (m.type == MessageType::order) {
    const UnitOrder& o = m.order;
    json.update({{"unit", o.unit}, {"attempt", o.attempt}, {"model_name", o.model_name}, {"model_path", o.model_path},
                 {"model_dtype", o.model_dtype}, {"model_tokenizer", o.model_tokenizer}, {"dataset_name", o.dataset_name},
                 {"dataset_kind", o.dataset_kind}, {"dataset_path", o.dataset_path}, {"dataset_options", o.dataset_options},
                 {"first", o.first}, {"count", o.count}, {"interventions", o.interventions}, {"batch_size", o.batch_size},
                 {"token_budget", o.token_budget}, {"keep_detail", o.keep_detail}});
  } else if (m.type == MessageType::report) {
    const UnitReport& r = m.report;
    nlohmann::json results = nlohmann::json::array();
    for (const ShardResult& s : r.results) results.push_back(to_json(s));
    json.update({{"unit", r.unit}, {"attempt", r.attempt}, {"ok", r.ok}, {"error", r.error},
                 {"out_of_memory", r.out_of_memory}, {"cancelled", r.cancelled}, {"seconds", r.seconds}, {"loaded_model", r.loaded_model},
                 {"results", results}});
  } else if (m.type == MessageType::hello) {
    json.update({{"host", m.hello.host}, {"device", m.hello.device}});
  }
  return json.dump();
}

Message decode_message(const std::string& bytes) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed message: not JSON (") + e.what() + ")");
  }
  FieldReader fields(json, "the message");
  const std::string type = fields.get<std::string>("type");
  Message m;
  if (type == "order") {
    m.type = MessageType::order;
    UnitOrder& o = m.order;
    o.unit = fields.get<int64_t>("unit");
    o.attempt = fields.get<int>("attempt");
    o.model_name = fields.get<std::string>("model_name");
    o.model_path = fields.get<std::string>("model_path");
    o.model_dtype = fields.get<std::string>("model_dtype");
    o.model_tokenizer = fields.get<std::string>("model_tokenizer");
    o.dataset_name = fields.get<std::string>("dataset_name");
    o.dataset_kind = fields.get<std::string>("dataset_kind");
    o.dataset_path = fields.get<std::string>("dataset_path");
    o.dataset_options = fields.at("dataset_options");
    if (!o.dataset_options.is_object()) throw Error("malformed message: the order's field 'dataset_options' is not an object");
    o.first = fields.get<int64_t>("first");
    o.count = fields.get<int64_t>("count");
    o.interventions = fields.get<std::vector<std::string>>("interventions");
    o.batch_size = fields.get<int>("batch_size");
    o.token_budget = fields.get<int64_t>("token_budget");
    o.keep_detail = fields.get<bool>("keep_detail");
    if (o.first < 0 || o.count < 1 || o.batch_size < 1 || o.token_budget < 0)
      throw Error("malformed message: the order has first < 0, count < 1, batch_size < 1 or token_budget < 0");
  } else if (type == "report") {
    m.type = MessageType::report;
    UnitReport& r = m.report;
    r.unit = fields.get<int64_t>("unit");
    r.attempt = fields.get<int>("attempt");
    r.ok = fields.get<bool>("ok");
    r.error = fields.get<std::string>("error");
    r.out_of_memory = fields.get<bool>("out_of_memory");
    r.cancelled = fields.get<bool>("cancelled");
    r.seconds = fields.get<double>("seconds");
    r.loaded_model = fields.get<std::string>("loaded_model");
    const nlohmann::json& results = fields.at("results");
    if (!results.is_array()) throw Error("malformed message: the report's field 'results' is not an array");
    for (const auto& s : results) r.results.push_back(shard_result_from_json(s));
  } else if (type == "hello") {
    m.type = MessageType::hello;
    m.hello.host = fields.get<std::string>("host");
    m.hello.device = fields.get<std::string>("device");
  } else if (type == "stop") {
    m.type = MessageType::stop;
  } else if (type == "cancel") {
    m.type = MessageType::cancel;
  } else {
    throw Error("malformed message: unknown type '" + type + "'");
  }
  fields.finish();
  return m;
}

}  // namespace memsweep
