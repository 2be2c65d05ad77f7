#pragma once
// Datasets as tasks read them, without libtorch. What a task needs of its model (TaskContext) is read from the
// model's folder alone, by one rule for every command; each kind's rows or documents are read and checked here,
// once, for `eval`, run's workers (tasks/task.h builds a Task on top), `plan` and rank 0's example counts — so they
// cannot disagree on a dataset's examples, its tokenizer, its length limit or its errors.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "worker/model/model_config.h"
#include "worker/tasks/benchmarks/documents.h"
#include "worker/tasks/benchmarks/requests.h"
#include "worker/tasks/token_rows.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {

struct DatasetSpec {
  std::string name;        // as the study names it
  std::string kind;        // "memorization", "divergence", "piqa", ...
  std::string path;        // the data file
  nlohmann::json options;  // kind-specific, e.g. {"prefix": 32, "suffix": 32, "mask_eos": true}
};

// What a task may need of the model it will run on (known before any weights load).
struct TaskContext {
  std::string model;                   // how messages name the model: its study name, or its folder
  std::optional<Tokenizer> tokenizer;  // for text datasets; none when the model has none
  int64_t vocab_size = 0;              // rows of the output head: every id must be below
  std::vector<int64_t> eos_token_ids;
  // The model's context length as lm-evaluation-harness resolves it (harness_max_length): benchmarks truncate their
  // inputs from the left to it, and a memorization or divergence row longer than it is an error.
  int64_t max_length = 2048;
};

// lm-evaluation-harness's max length of a model folder: config.json's n_positions, max_position_embeddings or n_ctx,
// else tokenizer_config.json's model_max_length (unless unset), else 2048.
int64_t harness_max_length(const std::string& model_dir);

// Reads config.json (and the tokenizer that model_tokenizer_path() finds) of `model_dir`; `model_name` names it in messages.
TaskContext read_task_context(const std::string& model_dir, const std::string& tokenizer, const std::string& model_name);

// "dataset 'NAME' (KIND) on model 'MODEL'": how every error about opening a dataset starts.
std::string dataset_on_model(const DatasetSpec& spec, const TaskContext& context);

// A memorization set's options (a dataset's options table; Error naming the option).
struct MemorizationOptions {
  int64_t prefix = 32;
  int64_t suffix = -1;  // -1: the rest of each row
  int64_t limit = -1;
  bool mask_eos = true;
  bool skip_bad = false;
  static MemorizationOptions read(const nlohmann::json& options);
};

// The rows a memorization task evaluates: every row of the file (after `limit`) with at least prefix + suffix tokens
// and at most the model's max length (prefix + suffix when a suffix is set); others are errors, or skipped and
// counted with skip_bad.
struct MemorizationRows {
  MemorizationOptions options;
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> source;  // per row: its line (JSONL) or row (npy) in the file
  int64_t skipped = 0;
};
MemorizationRows read_memorization_rows(const DatasetSpec& spec, const TaskContext& context);

// The rows a divergence task evaluates (options limit, skip_bad), each non-empty and at most the max length (others
// are errors, or skipped and counted with skip_bad).
TokenRows read_divergence_rows(const DatasetSpec& spec, const TaskContext& context);

// A benchmark's options (worker/tasks/benchmarks/README.md); Error naming the option.
struct BenchmarkOptions {
  int64_t limit = -1;
  std::string tag;               // "language" or "reasoning"
  int64_t token_budget = 8192;   // padded positions per batch of the loglikelihood engine
  bool share_contexts = true;
  MultipleChoiceTemplate settings;
};
BenchmarkOptions read_benchmark_options(const DatasetSpec& spec, const BenchmarkKind& kind);
// A benchmark dataset's tag, "language" or "reasoning": its option 'tag' or the kind's documented default.
std::string benchmark_tag(const DatasetSpec& spec);

// A benchmark's documents and the requests the harness makes of them, tokenized and fitted to the max length.
struct BenchmarkSet {
  const BenchmarkKind* kind = nullptr;
  BenchmarkOptions options;
  std::vector<BenchmarkDocument> documents;
  std::vector<TokenRequest> requests;   // empty unless tokenized
  std::vector<size_t> first_request;    // per document, its first request; one past the last at the end
};
// With tokenize = false only the documents are read (a count needs no more).
BenchmarkSet read_benchmark_set(const DatasetSpec& spec, const TaskContext& context, bool tokenize);

// How many examples the dataset's task has for this model (benchmarks are not tokenized for it). Errors start with
// dataset_on_model().
int64_t count_examples(const DatasetSpec& spec, const TaskContext& context);

// The largest batch the dataset's task runs at `batch_size` rows and `token_budget` padded tokens per pass (0: no
// budget), as estimate_memory() takes it. Errors start with dataset_on_model().
BatchShape largest_batch(const DatasetSpec& spec, const TaskContext& context, int batch_size, int64_t token_budget);

// Rows of `tokens_per_row` tokens per forward pass: batch_size, fewer where token_budget (> 0) binds, at least 1.
int64_t rows_per_pass(int batch_size, int64_t token_budget, int64_t tokens_per_row);

}  // namespace memsweep
