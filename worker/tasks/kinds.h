#pragma once
// The task kinds: their open functions (listed in task.cpp's table) and what other commands reuse of them.
#include <memory>

#include "worker/tasks/task.h"

namespace memsweep {

// Scores rows [start, start + count) (prefix ‖ suffix each) under the model's current attention modes and adds
// their records (index = row number, detail.source = source[row]) and totals to `result`.
void evaluate_memorization(CausalLM& model, const std::vector<std::vector<int64_t>>& rows, const std::vector<int64_t>& source,
                           int64_t start, int64_t count, const MemorizationOptions& options, ShardResult& result);

std::unique_ptr<Task> open_memorization_task(const DatasetSpec& spec, const TaskContext& context);
std::unique_ptr<Task> open_divergence_task(const DatasetSpec& spec, const TaskContext& context);
// The zero-shot benchmarks (worker/tasks/benchmarks/README.md): piqa, arc_easy, ..., multiple_choice, ...
std::unique_ptr<Task> open_benchmark_task(const DatasetSpec& spec, const TaskContext& context);

}  // namespace memsweep
