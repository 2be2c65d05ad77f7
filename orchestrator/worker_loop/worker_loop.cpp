#include "orchestrator/worker_loop/worker_loop.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <new>

#include "worker/base/error.h"
#include "worker/base/log.h"

namespace memsweep {

CausalLM& ModelCache::model(const std::string& name, const std::string& path, const std::string& dtype, const std::string& tokenizer) {
  if (model_ && name == name_) return *model_;
  tasks_.clear();
  model_.reset();  // free the old weights before the new ones load
  name_.clear();
  log_info("loading model '" + name + "' from " + path + " (" + dtype + ", " + device_ +
           (devices_ > 1 ? ", layers split over " + std::to_string(devices_) + " devices" : "") + ")");
  const auto start = std::chrono::steady_clock::now();
  LoadOptions options{parse_dtype(dtype), parse_device(device_)};
  options.devices = devices_;
  context_ = read_task_context(path, tokenizer, name);
  model_ = load_causal_lm(path, options);
  name_ = name;
  ++loads_;
  log_info("model '" + name + "' loaded in " + std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) + " s");
  return *model_;
}

Task& ModelCache::task(const DatasetSpec& spec) {
  auto found = tasks_.find(spec.name);
  if (found != tasks_.end()) return *found->second;
  return *(tasks_[spec.name] = open_task(spec, context_));
}

UnitReport TorchUnitRunner::run(const UnitOrder& order, const StopCheck& stop) {
  UnitReport report;
  report.unit = order.unit;
  report.attempt = order.attempt;
  set_log_unit(std::to_string(order.unit) + "." + std::to_string(order.attempt));
  const auto start = std::chrono::steady_clock::now();
  try {
    CausalLM& model = cache_.model(order.model_name, order.model_path, order.model_dtype, order.model_tokenizer);
    Task& task = cache_.task(DatasetSpec{order.dataset_name, order.dataset_kind, order.dataset_path, order.dataset_options});
    if (order.first + order.count > task.num_examples())
      throw Error("dataset '" + order.dataset_name + "' has " + std::to_string(task.num_examples()) + " examples; the unit asks for [" +
                  std::to_string(order.first) + ", " + std::to_string(order.first + order.count) + ")");
    std::vector<Intervention> interventions;
    for (const std::string& name : order.interventions) interventions.push_back(Intervention::parse(name, model.num_layers()));
    RunOptions options;
    options.batch_size = order.batch_size;
    options.token_budget = order.token_budget;
    options.stop = stop;
    report.results = task.run(model, order.first, order.count, interventions, options);
    if (!order.keep_detail)
      for (ShardResult& result : report.results)
        for (ExampleRecord& example : result.examples) example.detail = nullptr;
    report.ok = true;
  } catch (const UnitCancelled& e) {
    report.error = e.what();
    report.cancelled = true;
  } catch (const c10::OutOfMemoryError& e) {
    report.error = std::string("out of memory: ") + e.what_without_backtrace();
    report.out_of_memory = true;
  } catch (const c10::Error& e) {
    report.error = e.what_without_backtrace();
    // libtorch's CPU allocator reports a failed allocation as a plain c10::Error (CUDA's is OutOfMemoryError):
    // it is an out-of-memory all the same, and a smaller batch may fit.
    if (report.error.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos) {
      report.error = "out of memory: " + report.error;
      report.out_of_memory = true;
    }
  } catch (const std::bad_alloc& e) {
    report.error = std::string("out of memory: ") + e.what();
    report.out_of_memory = true;
  } catch (const std::exception& e) {
    report.error = e.what();
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.loaded_model = cache_.loaded();
  if (report.cancelled) log_info("unit abandoned between batches: it will run again");
  else if (!report.ok) log_warning("unit failed: " + report.error);
  set_log_unit("");
  return report;
}

}  // namespace memsweep
