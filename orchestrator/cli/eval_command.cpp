// memsweep eval: one model × dataset under one or several interventions, without the orchestrator. Prints the
// dataset-level metrics as JSON and writes per-example results.
#include <ATen/Parallel.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/memory_use.h"
#include "orchestrator/cli/model_options.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/scheduler/progress.h"
#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/tasks/kinds.h"
#include "worker/tasks/statistics.h"
#include "worker/tasks/task.h"
#include "worker/tokenizer/tokenizer.h"

namespace po = boost::program_options;

namespace memsweep {
namespace {

// "key=value": the value as JSON when it parses (numbers, true/false, quoted strings), else as a string.
void add_option(nlohmann::json& options, const std::string& text) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos || equals == 0) throw Error("--option '" + text + "' is not KEY=VALUE");
  const std::string key = text.substr(0, equals), value = text.substr(equals + 1);
  nlohmann::json parsed = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  options[key] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
}

}  // namespace

int eval_command(const Arguments& args) {
  const CommandSpec spec{
      "eval", "--model DIR --task KIND:PATH [options]",
      "Evaluates one model on one dataset under one or more interventions and prints, per intervention, the\n"
      "dataset-level metrics as JSON: {\"results\": [{\"intervention\": NAME, \"metrics\": {...}}, ...]}.\n"
      "Interventions: --short-circuit/--zero-attention give one; each --intervention NAME adds one\n"
      "(baseline, short_circuit:3, short_circuit:18-23, zero_attention:0, short_circuit:1;zero_attention:2);\n"
      "--sweep adds the baseline and every block short-circuited alone; one given twice runs once. Several\n"
      "interventions share the layers below each one's first block (computed once per batch) unless --no-reuse;\n"
      "results are the same.\n"
      "Kinds: memorization (PATH: .npy of token ids, or .jsonl rows {\"tokens\": [...]} or {\"text\": ...};\n"
      "options prefix=32, suffix=<rest>, mask_eos=true, limit, skip_bad). The model's tokenizer is\n"
      "DIR/tokenizer.json (or vocab.json + merges.txt) unless --tokenizer says otherwise; with\n"
      "--dataset-tokenizer (a tokenizer path or its content hash, as `memsweep tokenize --hash` prints) a\n"
      "mismatch with the model's tokenizer is an error before any work. Bad data (a line that is not JSON, a\n"
      "missing field, an id beyond the vocabulary, a row shorter than prefix + 1) is an error naming file and\n"
      "line; with --skip-bad such rows are skipped and counted. The JSON also gives the seconds of the model's load\n"
      "and of the evaluation, and memory in bytes: resident before the model loaded and at the peak, and in use on the\n"
      "heap (the tensors: a CPU's counterpart of a GPU's allocated memory) before the model loaded and at the peak.\n"
      "--print-requests (benchmark kinds): prints each loglikelihood request's token ids as a JSON line\n"
      "{\"document\", \"context\", \"continuation\"}, as the model would be given them, and exits before loading the weights."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string task_text, out_path, tokenizer_path, dataset_tokenizer;
  std::vector<std::string> option_texts, intervention_names;
  int64_t limit = -1;
  int batch_size = 8;
  double progress_every_s = 10;
  options.add_options()
      ("task", po::value(&task_text)->required(), "KIND:PATH, e.g. memorization:data/pythia-1.4b.jsonl")
      ("option", po::value(&option_texts)->composing(), "dataset option KEY=VALUE (repeatable), e.g. prefix=32")
      ("limit", po::value(&limit), "evaluate only the first N examples")
      ("skip-bad", "skip (and count) rows with bad data instead of failing")
      ("tokenizer", po::value(&tokenizer_path), "the model's tokenizer, if not in the model directory")
      ("dataset-tokenizer", po::value(&dataset_tokenizer), "the tokenizer the dataset was made with (path or content hash)")
      ("intervention", po::value(&intervention_names)->composing(), "add an intervention by name (repeatable)")
      ("sweep", "add the baseline and every single block short-circuited")
      ("no-reuse", "compute every layer for every intervention")
      ("batch-size", po::value(&batch_size)->default_value(8), "rows per forward pass")
      ("progress-every", po::value(&progress_every_s)->default_value(10), "seconds between progress lines (rows done, rate, ETA)")
      ("out", po::value(&out_path), "write metrics and per-example results to this JSON file")
      ("print-requests", "print the benchmark's requests as token ids and exit (no weights are read)");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (batch_size < 1) throw Error("--batch-size must be at least 1");

  const size_t colon = task_text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == task_text.size())
    throw Error("--task '" + task_text + "' is not KIND:PATH");
  DatasetSpec dataset{std::filesystem::path(task_text.substr(colon + 1)).filename().string(), task_text.substr(0, colon),
                      task_text.substr(colon + 1), nlohmann::json::object()};
  for (const auto& text : option_texts) add_option(dataset.options, text);
  if (values.count("limit")) dataset.options["limit"] = limit;
  if (values.count("skip-bad")) dataset.options["skip_bad"] = true;

  // The task context and the dataset first, as `run` opens them (tasks/dataset.h): bad data fails before any weights load.
  const TaskContext context = read_task_context(model_options.model_dir, tokenizer_path, model_options.model_dir);
  if (!dataset_tokenizer.empty()) {
    if (!context.tokenizer) throw Error("--dataset-tokenizer given, but the model has no tokenizer to compare with (use --tokenizer)");
    const bool is_hash = dataset_tokenizer.size() == 64 && dataset_tokenizer.find_first_not_of("0123456789abcdef") == std::string::npos;
    const std::string expected = is_hash ? dataset_tokenizer : Tokenizer::load(dataset_tokenizer).content_hash();
    if (expected != context.tokenizer->content_hash())
      throw Error("dataset " + dataset.path + " was made with tokenizer " + expected + ", but the model's tokenizer is " +
                  context.tokenizer->content_hash() + ": its ids would be silently wrong");
  }
  if (values.count("print-requests")) {
    if (!find_benchmark_kind(dataset.kind)) throw Error("--print-requests is for benchmark kinds; '" + dataset.kind + "' is not one");
    const BenchmarkSet set = read_benchmark_set(dataset, context, true);
    for (size_t d = 0; d + 1 < set.first_request.size(); ++d)
      for (size_t r = set.first_request[d]; r < set.first_request[d + 1]; ++r)
        std::cout << nlohmann::json{{"document", d}, {"context", set.requests[r].context}, {"continuation", set.requests[r].continuation}}.dump() << "\n";
    return 0;
  }
  auto task = open_task(dataset, context);

  using Clock = std::chrono::steady_clock;
  const double rss_before_model = resident_bytes(), heap_before_model = heap_bytes_in_use();
  const HeapPeak heap_peak;
  const auto load_start = Clock::now();
  auto model = load_model_with_interventions(model_options);
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  std::vector<Intervention> interventions;
  Intervention from_flags;
  for (int layer = 0; layer < model->num_layers(); ++layer) {
    if (model->attention_mode(layer) == AttentionMode::short_circuit) from_flags.short_circuit.push_back(layer);
    if (model->attention_mode(layer) == AttentionMode::zero_attention) from_flags.zero_attention.push_back(layer);
  }
  std::vector<std::string> names;  // canonical; an intervention given twice runs once
  auto add = [&](const Intervention& intervention) {
    if (std::find(names.begin(), names.end(), intervention.name()) != names.end()) return;
    names.push_back(intervention.name());
    interventions.push_back(intervention);
  };
  if (!from_flags.is_baseline() || (intervention_names.empty() && !values.count("sweep"))) add(from_flags);
  for (const auto& name : intervention_names) add(Intervention::parse(name, model->num_layers()));
  if (values.count("sweep")) {
    add(Intervention());
    for (int layer = 0; layer < model->num_layers(); ++layer) add(Intervention{{layer}, {}});
  }
  RunOptions run_options;
  run_options.batch_size = batch_size;
  run_options.reuse_lower_layers = !values.count("no-reuse");
  log_info("evaluating " + std::to_string(task->num_examples()) + " examples of " + dataset.path + " under " +
           std::to_string(interventions.size()) + " intervention(s)");
  const auto run_start = Clock::now();
  auto last_line = run_start - std::chrono::hours(1);
  run_options.progress = [&](int64_t done, int64_t total, const char* what) {
    const auto now = Clock::now();
    if (done > 0 && done < total && std::chrono::duration<double>(now - last_line).count() < progress_every_s) return;
    if (done == 0 && total > 0) return;  // the start: nothing to say yet
    last_line = now;
    const double seconds = std::chrono::duration<double>(now - run_start).count(), rate = seconds > 0 ? double(done) / seconds : 0;
    char line[160];
    std::snprintf(line, sizeof line, "%lld/%lld %s (%.0f%%) | %.3g %s/s | ETA %s", (long long)done, (long long)total, what,
                  total > 0 ? 100.0 * double(done) / double(total) : 100.0, rate, what,
                  done >= total ? "0s" : rate > 0 ? format_duration(double(total - done) / rate).c_str() : "?");
    log_info(line);
  };
  const std::vector<ShardResult> results = task->run(*model, 0, task->num_examples(), interventions, run_options);
  const double run_seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  const std::vector<const ShardResult*> ordered = results_by_intervention(results, names, dataset.path);

  nlohmann::json summary = {{"model", model_options.model_dir}, {"dataset", dataset.path}, {"kind", dataset.kind},
                            {"results", nlohmann::json::array()},
                            {"seconds", {{"model_load", load_seconds}, {"evaluation", run_seconds}}},
                            {"intra_op_threads", at::get_num_threads()},
                            {"memory", {{"rss_before_model", rss_before_model}, {"peak_rss", peak_resident_bytes()},
                                        {"heap_before_model", heap_before_model}, {"peak_heap", heap_peak.peak()}}}};
  if (find_benchmark_kind(dataset.kind)) summary["tag"] = benchmark_tag(dataset);  // "language" or "reasoning"
  // Standard errors, and differences against the baseline when it is among the interventions (its results first).
  DatasetStatistics statistics(dataset.kind);
  for (bool baseline : {true, false})
    for (const ShardResult* result : ordered)
      if ((result->intervention == "baseline") == baseline) statistics.add(result->intervention, result->examples);
  const std::map<std::string, InterventionStatistics> uncertainty = statistics.finish();
  for (const ShardResult* result : ordered) {
    const InterventionStatistics& s = uncertainty.at(result->intervention);
    Values metrics = finalize_metrics(dataset.kind, result->totals);
    metrics.insert(s.stderrs.begin(), s.stderrs.end());
    nlohmann::json entry = {{"intervention", result->intervention}, {"metrics", metrics}};
    for (const auto& [metric, paired] : s.paired) entry["paired"][metric] = to_json(paired);
    summary["results"].push_back(entry);
  }
  std::cout << summary.dump(2) << "\n";
  if (!out_path.empty()) {
    nlohmann::json full = summary;
    for (size_t k = 0; k < ordered.size(); ++k) full["results"][k]["examples"] = to_json(*ordered[k])["examples"];
    std::ofstream out(out_path + ".partial");
    out << full.dump() << "\n";
    out.close();
    if (!out) throw Error("error while writing " + out_path + ".partial");
    std::filesystem::rename(out_path + ".partial", out_path);
  }
  return 0;
}

}  // namespace memsweep
