#pragma once
// What a worker rank runs: units on a model it keeps loaded between units (ModelCache) and datasets it keeps
// open per model, through the Task interface. Links libtorch.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "orchestrator/study/study.h"
#include "orchestrator/transport/transport.h"
#include "worker/model/model.h"
#include "worker/tasks/task.h"

namespace memsweep {

// One model at a time (a 12B model fills a GPU): loading another drops the previous one and its tasks.
class ModelCache {
 public:
  ModelCache(std::string device, int devices) : device_(std::move(device)), devices_(devices) {}
  // The model named `name`, loaded from `path` unless it is the one held. Counts loads.
  CausalLM& model(const std::string& name, const std::string& path, const std::string& dtype, const std::string& tokenizer);
  // The dataset opened for the held model (cached per dataset name).
  Task& task(const DatasetSpec& spec);
  const std::string& loaded() const { return name_; }
  int loads() const { return loads_; }

 private:
  std::string device_, name_;
  int devices_;  // a model's layers split over this many devices from device_
  std::unique_ptr<CausalLM> model_;
  TaskContext context_;  // the held model's, as eval and plan read it (tasks/dataset.h)
  std::map<std::string, std::unique_ptr<Task>> tasks_;
  int loads_ = 0;
};

class TorchUnitRunner : public UnitRunner {
 public:
  // `device`: the first of the `devices` the worker spans (LoadOptions::devices).
  TorchUnitRunner(std::string device, int devices) : device_(device), cache_(std::move(device), devices) {}
  std::string device() const override { return device_; }
  // Never throws: a failing unit (bad data, out of memory) becomes a report with its error.
  UnitReport run(const UnitOrder& order, const StopCheck& stop) override;

 private:
  std::string device_;
  ModelCache cache_;
};

}  // namespace memsweep
