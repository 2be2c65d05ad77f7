#pragma once
// The task kinds: their open functions (listed in task.cpp's table) and what other commands reuse of them.
#include <memory>

#include "worker/tasks/task.h"

namespace memsweep {

struct MemorizationOptions {
  int64_t prefix = 32;
  int64_t suffix = -1;  // -1: the rest of each row
  int64_t limit = -1;
  bool mask_eos = true;
  bool skip_bad = false;
  // From a dataset's options table; Error naming the dataset and the option.
  static MemorizationOptions read(const DatasetSpec& spec);
};

// Scores rows [start, start + count) (prefix ‖ suffix each) under the model's current attention modes and adds
// their records (index = row number, detail.source = source[row]) and totals to `result`.
void evaluate_memorization(CausalLM& model, const std::vector<std::vector<int64_t>>& rows, const std::vector<int64_t>& source,
                           int64_t start, int64_t count, const MemorizationOptions& options, ShardResult& result);

std::unique_ptr<Task> open_memorization_task(const DatasetSpec& spec, const TaskContext& context);
// The divergence kind's per-layer metric names: ("kl", 3) -> "kl.03" (zero-padded so they sort by layer).
std::string divergence_metric_name(const char* metric, int layer);
std::unique_ptr<Task> open_divergence_task(const DatasetSpec& spec, const TaskContext& context);
// The zero-shot benchmarks (worker/tasks/benchmarks/README.md): piqa, arc_easy, ..., multiple_choice, ...
std::unique_ptr<Task> open_benchmark_task(const DatasetSpec& spec, const TaskContext& context);
// A benchmark dataset's tag, "language" or "reasoning": its option 'tag' or the kind's documented default.
std::string benchmark_tag(const DatasetSpec& spec);

}  // namespace memsweep
