// memsweep plan: the grid a study expands to, each model's interventions, what its store already holds, and the
// memory each model needs for its datasets as they will be batched, before anything runs.
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
#include "worker/base/human_bytes.h"
#include "worker/base/log.h"
#include "worker/tasks/benchmarks/documents.h"

namespace po = boost::program_options;

namespace memsweep {

namespace {

// A short timed run of the first unit of each model and dataset, cut to `examples` examples after a one-example
// warm-up (model load, first allocations), on the device a worker would use. Prints minutes per unit, whether a unit
// started just before SIGUSR1 finishes within the drain grace, and the device-hours of the whole study and of what
// the store does not hold yet.
void calibrate(const PreparedStudy& prepared, const StoreSummary& stored, int64_t examples, double grace_s) {
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
  // Seconds per example and intervention, per (model, dataset): what every unit of that pair is projected with.
  std::map<std::pair<std::string, std::string>, double> rate;
  const std::vector<Unit> grid = prepared.units_to_add({});
  for (const Unit& unit : grid) {
    const auto pair = std::make_pair(unit.model, unit.dataset);
    if (rate.count(pair)) continue;
    UnitRow row;
    row.unit = unit;
    const UnitOrder order = make_unit_order(study, row, 1);
    timed(order, 1);
    const auto [seconds, count] = timed(order, examples);
    const double per_example = seconds / double(std::max<int64_t>(count, 1));
    const double unit_s = per_example * double(unit.count);
    rate[pair] = per_example / double(std::max<size_t>(unit.interventions.size(), 1));
    worst_s_per_example = std::max(worst_s_per_example, per_example);
    std::printf("%-20s %-20s %7zu %12.4g %9lld %11.3g  %s\n", unit.model.c_str(), unit.dataset.c_str(), unit.interventions.size(),
                per_example, (long long)unit.count, unit_s / 60, unit_s <= grace_s ? "fits" : "does NOT fit");
  }
  if (worst_s_per_example > 0)
    std::printf("a drain fits when every unit takes at most drain_grace_s = %g s: unit_size <= %lld here (examples per unit;\n"
                "fewer interventions per unit shorten a unit too). SLURM's USR1 lead must exceed the grace (memsweep submit\n"
                "--signal-lead, default drain_grace_s + cancel_wait_s + 60).\n",
                grace_s, (long long)(grace_s / worst_s_per_example));
  // The whole grid, and what is not done of it: the store's units of this study not done and what it would add.
  auto seconds = [&](const Unit& unit) {
    const auto found = rate.find({unit.model, unit.dataset});
    return found == rate.end() ? 0.0 : found->second * double(unit.count) * double(unit.interventions.size());
  };
  double total_s = 0, remaining_s = 0;
  for (const Unit& unit : grid) total_s += seconds(unit);
  std::vector<Unit> held;
  for (const HeldUnit& h : stored.units) {
    held.push_back(h.unit);
    if (h.status != "done") remaining_s += seconds(h.unit);
  }
  for (const Unit& unit : prepared.units_to_add(held)) remaining_s += seconds(unit);
  const int k = study.run.devices_per_worker;
  std::printf("the whole study: %.3g device-hours on %s (%.3g left to run)%s; model loads not counted, one per model and worker\n",
              total_s * k / 3600, device.c_str(), remaining_s * k / 3600,
              k > 1 ? (" with " + std::to_string(k) + " devices per worker").c_str() : "");
}

// Bytes per example × intervention in the store's default detail (schemas/store.md): the columns at the widths the
// encoder picks for them plus, per unit and intervention, its aggregates row and each column's row (~360 + 40 per
// column, measured in bench/RESULTS.md, store_size) shared out over the unit's examples. Multiple choice assumes 4
// choices.
double projected_bytes_per_evaluation(const DatasetEntry& d, int layers, int64_t examples_per_unit) {
  double columns = 0, bytes = 0;
  if (d.kind == "memorization") columns = 7, bytes = 1 + 4 + 8 + 1 + 4 + 4 + 4;  // EM TA CE ML | token, its gap, min gap
  else if (d.kind == "divergence") columns = 2.0 * layers, bytes = 16.0 * layers;  // kl.NN, relative_change.NN: f64
  else if (const BenchmarkKind* kind = find_benchmark_kind(d.kind); kind && kind->type == RequestType::multiple_choice)
    columns = 11, bytes = 2 + 4 * (8 + 1) + 8;  // acc, acc_norm | loglikelihood.K, is_greedy.K, choice_gap
  else if (kind && kind->type == RequestType::loglikelihood) columns = 3, bytes = 1 + 8 + 8;
  else columns = 3, bytes = 8 + 4 + 4;  // rolling: loglikelihood, words, bytes
  return bytes + (360 + 40 * columns) / double(std::max<int64_t>(examples_per_unit, 1));
}

// Prints names separated by ", ", wrapped before `width` columns, each line indented by `indent` spaces.
void print_wrapped(const std::vector<std::string>& names, size_t indent, size_t width) {
  size_t column = indent;
  std::printf("%*s", int(indent), "");
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string item = names[i] + (i + 1 < names.size() ? "," : "");
    if (column > indent && column + 1 + item.size() > width) std::printf("\n%*s", int(indent), ""), column = indent;
    else if (column > indent) std::printf(" "), ++column;
    std::printf("%s", item.c_str());
    column += item.size();
  }
  std::printf("\n");
}

}  // namespace

int plan_command(const Arguments& raw) {
  const CommandSpec spec{"plan", "STUDY.toml [--db PATH] [--device-memory GB] [--calibrate [--calibrate-examples N] [--grace SECONDS]]",
                         "Checks a study as `memsweep run` would (keys, paths, tokenizers, datasets) and prints its\n"
                         "grid: units, examples and interventions per model and dataset, the totals, each model's\n"
                         "interventions, and how many units the store already has done, failed, running or pending.\n"
                         "Then each model's memory per device of a worker: its weights in its dtype and the activations of\n"
                         "the largest batch its datasets make at [run] batch_size and token_budget, read off the datasets\n"
                         "themselves (their longest rows, tokenized where they are text). With --device-memory (a worker's\n"
                         "GPU, e.g. 80 for an 80 GB card) a model that does not fit is an error (exit 1).\n"
                         "--calibrate: times a few examples of the first unit of each model and dataset on this machine's\n"
                         "device and prints minutes per unit, whether a unit fits in the drain grace after SIGUSR1 and the\n"
                         "study's device-hours (run it on a compute node, like the workers: a login node's CPU says little\n"
                         "about a GPU)."};
  std::string study_path, db;
  double device_memory_gb = 0;
  bool calibrate_units = false;
  int64_t calibrate_examples = 4;
  double grace_s = -1;
  po::options_description options("options");
  options.add_options()("study", po::value(&study_path)->required(), "the study file")("db", po::value(&db), "the store (overrides [store] path)")(
      "device-memory", po::value(&device_memory_gb), "a worker's device memory in GB (1e9 bytes): refuse what does not fit")(
      "calibrate", po::bool_switch(&calibrate_units), "time a short run of one unit per model and dataset")(
      "calibrate-examples", po::value(&calibrate_examples)->default_value(4), "examples timed per unit")(
      "grace", po::value(&grace_s), "drain grace to check against (default [run] drain_grace_s)");
  po::positional_options_description positional;
  positional.add("study", 1);
  po::variables_map values;
  if (!parse_command_line(spec, options, raw, values, &positional)) return 0;

  const PreparedStudy prepared = prepare_study(study_path, db);
  const Study& study = prepared.study;
  const bool has_store = std::filesystem::exists(study.store.path);
  StoreSummary summary;
  if (has_store) summary = read_store_summary(study.store.path);
  std::vector<Unit> held;
  for (const HeldUnit& h : summary.units) held.push_back(h.unit);
  const std::vector<Unit> added = prepared.units_to_add(held);

  struct Row {
    int64_t units = 0, evaluations = 0;
    std::map<std::string, int64_t> status;
    std::set<std::string> new_interventions;
  };
  std::map<std::string, size_t> model_index, dataset_index;
  for (size_t m = 0; m < study.models.size(); ++m) model_index[study.models[m].name] = m;
  for (size_t d = 0; d < study.datasets.size(); ++d) dataset_index[study.datasets[d].name] = d;
  std::map<std::pair<size_t, size_t>, Row> rows;
  Row total;
  auto count = [&](const Unit& u, const std::string& status) {
    const auto m = model_index.find(u.model), d = dataset_index.find(u.dataset);
    if (m == model_index.end() || d == dataset_index.end()) return;  // named no more: removed_from_study() says so
    Row& row = rows[{m->second, d->second}];
    for (Row* r : {&row, &total}) {
      r->units++;
      r->evaluations += u.count * int64_t(u.interventions.size());
      r->status[status]++;
      if (status == "new") r->new_interventions.insert(u.interventions.begin(), u.interventions.end());
    }
  };
  for (const HeldUnit& h : summary.units) count(h.unit, h.status);
  for (const Unit& u : added) count(u, "new");
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
    print(m.name, d.name, std::to_string(m.num_layers), std::to_string(prepared.datasets[key.second].num_examples),
          std::to_string(study.interventions_for(m).size()), row);
  }
  print("total", "", "", "", "", total);
  std::printf("\n%lld example evaluations (examples x interventions); batch size %d, %lld examples per unit\n",
              (long long)total.evaluations, study.run.batch_size, (long long)study.run.unit_size);
  double store_bytes = 0;
  for (const auto& [key, row] : rows) {
    const int64_t examples = prepared.datasets[key.second].num_examples;
    store_bytes += double(row.evaluations) * projected_bytes_per_evaluation(study.datasets[key.second], study.models[key.first].num_layers,
                                                                            std::min(examples, study.run.unit_size));
  }
  std::printf("store: about %s when every unit is done (per-example numbers in the default detail%s)\n", human_bytes(store_bytes).c_str(),
              study.store.full_detail ? "; detail = \"full\" adds each example's detail JSON, ~25 bytes per generated token" : "");

  // What the store holds of other versions of the study file, and what --extend would do with this one.
  if (has_store && summary.study_hash != study.file_hash) {
    const std::vector<std::string> removed = removed_from_study(study, held);
    if (!removed.empty()) {
      std::printf("\nthe store holds units for what this study file no longer names; `run --extend` refuses it:\n");
      for (const std::string& item : removed) std::printf("  %s\n", item.c_str());
    } else {
      int64_t evaluations = 0;
      for (const Unit& u : added) evaluations += u.count * int64_t(u.interventions.size());
      std::printf("\nthe store holds another version of this study file; `memsweep run --extend` adds %zu units, %lld example\n"
                  "evaluations, and recomputes nothing:\n", added.size(), (long long)evaluations);
      for (const auto& [key, row] : rows) {
        if (row.new_interventions.empty()) continue;
        const std::vector<std::string> names(row.new_interventions.begin(), row.new_interventions.end());
        std::printf("  %s on %s: %lld units under\n", study.models[key.first].name.c_str(), study.datasets[key.second].name.c_str(),
                    (long long)row.status.at("new"));
        print_wrapped(names, 4, 110);
      }
    }
  }
  if (const std::string warning = double_coverage_warning(summary); !warning.empty()) std::printf("\n%s\n", warning.c_str());

  std::printf("\ninterventions per model:\n");
  for (const ModelEntry& m : study.models) {
    const std::vector<std::string> names = study.interventions_for(m);
    std::printf("  %s (%zu):\n", m.name.c_str(), names.size());
    print_wrapped(names, 4, 110);
  }

  // Per device of a worker (devices_per_worker of them, the layers split over them): the one that needs the most,
  // for the dataset whose largest batch needs the most.
  const int k = study.run.devices_per_worker;
  std::printf("\n%-20s %-9s %12s %8s %10s %12s %10s  %-34s %s\n", "model", "dtype", "parameters", "devices", "weights", "activations",
              "total", "largest batch (dataset: rows x tokens)", device_memory_gb > 0 ? "fits (devices needed)" : "");
  int refused = 0;
  for (size_t mi = 0; mi < study.models.size(); ++mi) {
    const ModelEntry& m = study.models[mi];
    const ModelSize size = read_model_size(m.path);
    const int64_t bytes = dtype_bytes(m.dtype);
    if (k > size.layers)
      throw Error("devices_per_worker = " + std::to_string(k) + " is more than the " + std::to_string(size.layers) + " layers of model '" +
                  m.name + "': a worker cannot split it that far");
    std::vector<std::pair<const DatasetEntry*, BatchShape>> batches;
    for (const DatasetEntry& d : study.datasets) {
      if (!study.pairs(d, m)) continue;
      try {
        batches.emplace_back(&d, largest_batch(dataset_spec(d), prepared.contexts[mi], study.run.batch_size, study.run.token_budget));
      } catch (const Error& e) {
        throw Error(d.place.str() + ": " + e.what());
      }
    }
    auto worst = [&](int devices) {
      std::pair<MemoryEstimate, size_t> largest{MemoryEstimate(), 0};
      for (size_t b = 0; b < batches.size(); ++b) {
        const MemoryEstimate e = estimate_memory(size, bytes, batches[b].second, devices);
        if (b == 0 || e.total() > largest.first.total()) largest = {e, b};
      }
      if (batches.empty()) largest.first = estimate_memory(size, bytes, BatchShape(), devices);
      return largest;
    };
    const auto [e, b] = worst(k);
    const bool fits = e.total() <= device_memory_gb * 1e9;
    int needed = 0;  // the fewest devices per worker it fits on, 0: none
    for (int d = 1; d <= size.layers && device_memory_gb > 0 && !needed; ++d)
      if (worst(d).first.total() <= device_memory_gb * 1e9) needed = d;
    refused += device_memory_gb > 0 && !fits;
    const std::string verdict = device_memory_gb <= 0 ? ""
                                : (fits ? "yes" : "NO") + std::string(needed ? " (" + std::to_string(needed) + ")" : " (none)");
    std::string largest = "-";
    if (!batches.empty()) {
      const BatchShape& shape = batches[b].second;
      largest = batches[b].first->name + ": " + std::to_string(shape.rows) + " x " + std::to_string(shape.tokens);
      if (shape.kind == BatchShape::Kind::loglikelihood)
        largest += " + " + std::to_string(shape.continuation_rows) + " x " + std::to_string(shape.continuation_tokens);
    }
    std::printf("%-20s %-9s %12lld %8d %10s %12s %10s  %-34s %s\n", m.name.c_str(), m.dtype.c_str(), (long long)size.parameters, k,
                human_bytes(e.weights).c_str(), human_bytes(e.activations).c_str(), human_bytes(e.total()).c_str(), largest.c_str(),
                verdict.c_str());
    if (device_memory_gb > 0 && !fits)
      log_error("model '" + m.name + "' (" + m.path + ") needs about " + human_bytes(e.total()) + " in " + m.dtype +
                " on its fullest device of " + std::to_string(k) + " (weights " + human_bytes(e.weights) + " + the largest batch, " +
                largest + ", " + human_bytes(e.activations) + "), more than the " + human_bytes(device_memory_gb * 1e9) +
                " given: " +
                (needed ? "set [run] devices_per_worker = " + std::to_string(needed) + " (its layers split over " +
                              std::to_string(needed) + " devices), or "
                        : std::string()) +
                "use bfloat16, a smaller batch_size or token_budget, or a larger device");
  }
  std::printf("(per device of a worker's %d; loglikelihood batches: contexts + continuation rows; add ~1 GB for the CUDA\n"
              "context on a GPU, or the libraries' ~0.2 GB on a CPU)\n", k);
  if (calibrate_units)
    calibrate(prepared, summary, std::max<int64_t>(calibrate_examples, 1), grace_s >= 0 ? grace_s : study.run.drain_grace_s);
  return refused ? 1 : 0;
}

}  // namespace memsweep
