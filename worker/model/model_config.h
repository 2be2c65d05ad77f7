#pragma once
// What is known of a model from its config.json alone, without libtorch and without reading weights: its size (from
// its architecture's spec, worker/model/spec.h) and the memory a worker needs for a batch of a given shape. `plan`,
// rank 0 and the tasks' readers use this; the model layer adds libtorch.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/spec.h"

namespace memsweep {

// A model's size from its config.json alone: what `plan` needs to say whether it fits, what a task needs to know.
struct ModelSize {
  std::string architecture;
  int64_t parameters = 0, layers = 0, hidden = 0, intermediate = 0, vocab = 0, max_positions = 0;
  int64_t kv_width = 0;  // a token's keys (or values) in one layer: KV heads x head size
  // Where they live when split: with the first layer (embeddings, and a head tied to them), each layer, with the
  // last layer (final norm, an untied head).
  int64_t first_parameters = 0, layer_parameters = 0, last_parameters = 0;
  std::vector<int64_t> eos_token_ids;
};
// The spec's tensors counted. read_model_size reads the spec first (read_decoder_spec's errors).
ModelSize model_size(const DecoderSpec& spec);
ModelSize read_model_size(const std::string& model_dir);

// Bytes per element of "float32" | "float16" | "bfloat16"; Error otherwise.
int64_t dtype_bytes(const std::string& dtype);

// Memorization sweeps decode the generations that several interventions' teacher-forced passes leave as one batch:
// up to this many batches' rows at once (their kept caches count in estimate_memory).
constexpr int64_t kGenerationBatches = 4;

// The largest batch a task runs on a dataset, in the shapes that size its memory (tasks/dataset.h's
// largest_batch() reads them off the dataset as its task will batch it).
struct BatchShape {
  enum class Kind { memorization, divergence, loglikelihood };
  Kind kind = Kind::memorization;
  int64_t rows = 0;    // rows of the first pass (memorization, divergence: the batch; loglikelihood: its contexts)
  int64_t tokens = 0;  // their padded length
  int64_t scored = 0;  // memorization: suffix positions whose logits a pass makes (the longest suffix)
  // loglikelihood: continuation rows, each run after a copy of its context's keys and values, in passes right-padded
  // to their longest row: the rows, the longest (fed tokens), the padded positions of all passes and of the largest
  // pass with its contexts' copies, and the tokens the batch scores
  int64_t continuation_rows = 0, continuation_tokens = 0, continuation_positions = 0, largest_pass = 0, predicted = 0;
};

// Peak memory of a worker running `batch` in a dtype of `element_bytes` (bytes), per device of `devices` over which
// the layers are split (the device that needs the most). Activations are what the task holds at its peak:
// - memorization: the baseline's keys, values and layer outputs (the below-block reuse), and either an
//   intervention's own pass (the kept caches of up to kGenerationBatches batches of waiting generations, its keys and
//   values, the suffix logits and their float32 scoring) or the merged decode (the waiting caches merged layer by
//   layer into storage reserved for every step, the step logits);
// - divergence: every layer's output twice and every layer's logit-lens log-probabilities of the baseline (float32,
//   kept while the interventions run);
// - loglikelihood: the contexts' and every continuation pass's keys, values and outputs kept by the baseline, an
//   intervention's own for its contexts and its largest pass, the output head's 128 MB of logits at a time;
// plus the MLP's inner activations and a packed copy of the output head's weight (a CPU's BLAS makes one at every
// product). Not counted: the CUDA context (~1 GB), a CPU process's libraries, allocator fragmentation. Checked against
// measured peaks (bench/peak_memory.py); an estimate for planning, not a bound libtorch's allocator promises.
struct MemoryEstimate {
  double weights = 0, activations = 0;
  double total() const { return weights + activations; }
};
MemoryEstimate estimate_memory(const ModelSize& size, int64_t element_bytes, const BatchShape& batch, int devices = 1);

}  // namespace memsweep
