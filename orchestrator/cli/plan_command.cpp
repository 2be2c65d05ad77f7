// memsweep plan: the grid a study expands to, and what its store already holds, before anything runs.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <torch/torch.h>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/cli/study_setup.h"
#include "orchestrator/scheduler/coordinator.h"
#include "orchestrator/store/summary.h"
#include "orchestrator/worker_loop/device_choice.h"
#include "orchestrator/worker_loop/worker_loop.h"
#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/model/model.h"

namespace po = boost::program_options;

namespace memsweep {

namespace {

// A short timed run of the first unit of each model and dataset, cut to `examples` examples after a one-example
// warm-up (model load, first allocations), on the device a worker would use. Prints minutes per unit and
// whether a unit started just before SIGUSR1 finishes within the drain grace.
void calibrate(const PreparedStudy& prepared, int64_t examples, double grace_s) {
  const Study& study = prepared.study;
  const std::string device = choose_device(study.run.device, 0, int(torch::cuda::device_count()), std::getenv("CUDA_VISIBLE_DEVICES"),
                                           study.run.devices_per_worker);
  TorchUnitRunner runner(device, study.run.devices_per_worker);
  auto timed = [&](UnitOrder order, int64_t count) {
    order.count = std::min(order.count, count);
    const UnitReport report = runner.run(order, [] { return false; });
    if (!report.ok) throw Error("calibration of " + order.model_name + " on " + order.dataset_name + " failed: " + report.error);
    return std::make_pair(report.seconds, order.count);
  };
  std::printf("\ncalibration on %s: up to %lld examples of the first unit of each model and dataset, after a warm-up\n", device.c_str(),
              (long long)examples);
  std::printf("%-20s %-20s %7s %12s %9s %11s  %s\n", "model", "dataset", "interv", "s/example", "examples", "min/unit",
              ("drain in " + std::to_string(int(grace_s)) + " s").c_str());
  double worst_s_per_example = 0;
  std::set<std::pair<std::string, std::string>> seen;
  for (const Unit& unit : prepared.units) {
    if (!seen.insert({unit.model, unit.dataset}).second) continue;
    UnitRow row;
    row.unit = unit;
    const UnitOrder order = make_unit_order(study, row, 1);
    timed(order, 1);
    const auto [seconds, count] = timed(order, examples);
    const double per_example = seconds / double(std::max<int64_t>(count, 1));
    const double unit_s = per_example * double(unit.count);
    worst_s_per_example = std::max(worst_s_per_example, per_example);
    std::printf("%-20s %-20s %7zu %12.4g %9lld %11.3g  %s\n", unit.model.c_str(), unit.dataset.c_str(), unit.interventions.size(),
                per_example, (long long)unit.count, unit_s / 60, unit_s <= grace_s ? "fits" : "does NOT fit");
  }
  if (worst_s_per_example > 0)
    std::printf("a drain fits when every unit takes at most drain_grace_s = %g s: unit_size <= %lld here (examples per unit;\n"
                "fewer interventions per unit shorten a unit too). SLURM's USR1 lead must exceed the grace (memsweep submit\n"
                "--signal-lead, default drain_grace_s + cancel_wait_s + 60).\n",
                grace_s, (long long)(grace_s / worst_s_per_example));
}

}  // namespace

int plan_command(const Arguments& raw) {
  const CommandSpec spec{"plan", "STUDY.toml [--db PATH] [--device-memory GB] [--tokens N] [--calibrate [--calibrate-examples N] [--grace SECONDS]]",
                         "Checks a study as `memsweep run` would (keys, paths, tokenizers, datasets) and prints its\n"
                         "grid: units, examples and interventions per model and dataset, the totals, and how many\n"
                         "units the store already has done, failed, running or pending.\n"
                         "Then each model's memory from its config.json: weights in its dtype and the activations of\n"
                         "one batch of [run] batch_size rows of N tokens (default: token_budget / batch_size when a\n"
                         "token budget is set, else the model's context length). With --device-memory (a worker's\n"
                         "GPU, e.g. 80 for an 80 GB card) a model that does not fit is an error (exit 1).\n"
                         "--calibrate: times a few examples of the first unit of each model and dataset on this machine's\n"
                         "device and prints minutes per unit and whether a unit fits in the drain grace after SIGUSR1\n"
                         "(run it on a compute node, like the workers: a login node's CPU says little about a GPU)."};
  std::string study_path, db;
  double device_memory_gb = 0;
  int64_t tokens_option = 0;
  bool calibrate_units = false;
  int64_t calibrate_examples = 4;
  double grace_s = -1;
  po::options_description options("options");
  options.add_options()("study", po::value(&study_path)->required(), "the study file")("db", po::value(&db), "the store (overrides [store] path)")(
      "device-memory", po::value(&device_memory_gb), "a worker's device memory in GB (1e9 bytes): refuse what does not fit")(
      "tokens", po::value(&tokens_option), "tokens per row for the activation estimate")(
      "calibrate", po::bool_switch(&calibrate_units), "time a short run of one unit per model and dataset")(
      "calibrate-examples", po::value(&calibrate_examples)->default_value(4), "examples timed per unit")(
      "grace", po::value(&grace_s), "drain grace to check against (default [run] drain_grace_s)");
  po::positional_options_description positional;
  positional.add("study", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  const PreparedStudy prepared = prepare_study(study_path, db);
  const Study& study = prepared.study;
  std::map<std::string, std::string> stored;
  const bool has_store = std::filesystem::exists(study.store.path);
  if (has_store) stored = read_store_summary(study.store.path).status_by_key;

  struct Row {
    int64_t units = 0, examples = 0, interventions = 0, evaluations = 0;
    std::map<std::string, int64_t> status;
  };
  std::map<std::pair<size_t, size_t>, Row> rows;
  Row total;
  for (const Unit& u : prepared.units) {
    size_t m = 0, d = 0;
    while (study.models[m].name != u.model) ++m;
    while (study.datasets[d].name != u.dataset) ++d;
    Row& row = rows[{m, d}];
    for (Row* r : {&row, &total}) {
      r->units++;
      r->evaluations += u.count * int64_t(u.interventions.size());
      auto found = stored.find(u.key());
      r->status[found == stored.end() ? "new" : found->second]++;
    }
  }
  std::printf("study %s (sha256:%s)\nstore %s%s\n\n", study.name.c_str(), study.file_hash.substr(0, 16).c_str(),
              study.store.path.c_str(), has_store ? "" : " (not created yet)");
  std::printf("%-20s %-20s %7s %9s %6s %12s %7s %7s %7s %7s\n", "model", "dataset", "layers", "examples", "interv",
              "units", "done", "failed", "pending", "new");
  auto print = [](const std::string& model, const std::string& dataset, const std::string& layers, const std::string& examples,
                  const std::string& interventions, const Row& r) {
    auto n = [&](const char* s) { auto f = r.status.find(s); return f == r.status.end() ? int64_t(0) : f->second; };
    std::printf("%-20s %-20s %7s %9s %6s %12lld %7lld %7lld %7lld %7lld\n", model.c_str(), dataset.c_str(), layers.c_str(),
                examples.c_str(), interventions.c_str(), (long long)r.units, (long long)n("done"), (long long)n("failed"),
                (long long)(n("pending") + n("running")), (long long)n("new"));
  };
  for (const auto& [key, row] : rows) {
    const ModelEntry& m = study.models[key.first];
    const DatasetEntry& d = study.datasets[key.second];
    int64_t examples = 0;
    for (const DatasetFacts& f : prepared.datasets)
      if (f.name == d.name) examples = f.num_examples;
    print(m.name, d.name, std::to_string(m.num_layers), std::to_string(examples), std::to_string(study.interventions_for(m).size()), row);
  }
  print("total", "", "", "", "", total);
  std::printf("\n%lld example evaluations (examples x interventions); batch size %d, %lld examples per unit\n",
              (long long)total.evaluations, study.run.batch_size, (long long)study.run.unit_size);
  int64_t outside = 0;
  for (const auto& [key, status] : stored) {
    bool planned = false;
    for (const Unit& u : prepared.units) planned = planned || u.key() == key;
    outside += !planned;
  }
  if (outside) std::printf("the store also holds %lld units this study file does not plan (an earlier version)\n", (long long)outside);

  // Per device of a worker (devices_per_worker of them, the layers split over them): the one that needs the most.
  const int k = study.run.devices_per_worker;
  std::printf("\n%-20s %-9s %12s %8s %11s %14s %10s %s\n", "model", "dtype", "parameters", "devices", "weights GB",
              "activations GB", "total GB", device_memory_gb > 0 ? "fits (devices needed)" : "");
  int refused = 0;
  for (const ModelEntry& m : study.models) {
    const ModelSize size = read_model_size(m.path);
    const int64_t rows = study.run.batch_size;
    const int64_t tokens = tokens_option > 0 ? tokens_option
                           : study.run.token_budget > 0 ? std::max<int64_t>(1, study.run.token_budget / rows)
                                                        : size.max_positions;
    const torch::ScalarType dtype = parse_dtype(m.dtype);
    if (k > size.layers)
      throw Error("devices_per_worker = " + std::to_string(k) + " is more than the " + std::to_string(size.layers) + " layers of model '" +
                  m.name + "': a worker cannot split it that far");
    const MemoryEstimate e = estimate_memory(size, dtype, rows, tokens, k);
    const bool fits = e.total() <= device_memory_gb * 1e9;
    int needed = 0;  // the fewest devices per worker it fits on, 0: none
    for (int d = 1; d <= size.layers && device_memory_gb > 0 && !needed; ++d)
      if (estimate_memory(size, dtype, rows, tokens, d).total() <= device_memory_gb * 1e9) needed = d;
    refused += device_memory_gb > 0 && !fits;
    const std::string verdict = device_memory_gb <= 0 ? ""
                                : (fits ? "yes" : "NO") + std::string(needed ? " (" + std::to_string(needed) + ")" : " (none)");
    std::printf("%-20s %-9s %12lld %8d %11.2f %14.2f %10.2f %s\n", m.name.c_str(), m.dtype.c_str(), (long long)size.parameters, k,
                e.weights / 1e9, e.activations / 1e9, e.total() / 1e9, verdict.c_str());
    if (device_memory_gb > 0 && !fits)
      log_error("model '" + m.name + "' (" + m.path + ") needs about " + std::to_string(int64_t(e.total() / 1e9 + 0.5)) + " GB in " +
                m.dtype + " on its fullest device of " + std::to_string(k) + " (weights " + std::to_string(int64_t(e.weights / 1e9 + 0.5)) +
                " GB + one batch of " + std::to_string(rows) + " x " + std::to_string(tokens) + " tokens), more than the " +
                std::to_string(device_memory_gb) + " GB given: " +
                (needed ? "set [run] devices_per_worker = " + std::to_string(needed) + " (its layers split over " +
                              std::to_string(needed) + " devices), or "
                        : std::string()) +
                "use bfloat16, a smaller batch_size or token_budget, or a larger device");
  }
  std::printf("(per device of a worker's %d; activations: one batch of %d rows; add ~1 GB for the CUDA context)\n", k,
              study.run.batch_size);
  if (calibrate_units) calibrate(prepared, std::max<int64_t>(calibrate_examples, 1), grace_s >= 0 ? grace_s : study.run.drain_grace_s);
  return refused ? 1 : 0;
}

}  // namespace memsweep
