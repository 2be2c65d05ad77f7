// Model sizes and the memory estimate, from config.json alone (no libtorch).
#include "worker/model/model_config.h"

#include <algorithm>

#include "worker/base/error.h"
#include "worker/base/layer_split.h"

namespace memsweep {

ModelSize model_size(const DecoderSpec& spec) {
  auto count = [](const std::vector<TensorSpec>& tensors) {
    int64_t n = 0;
    for (const TensorSpec& t : tensors) n += t.elements();
    return n;
  };
  ModelSize size;
  size.architecture = spec.model_type;
  size.first_parameters = count(spec.first_tensors());
  size.layer_parameters = count(spec.layer_tensors(0));
  size.last_parameters = count(spec.last_tensors());
  size.parameters = size.first_parameters + spec.num_layers * size.layer_parameters + size.last_parameters;
  size.layers = spec.num_layers, size.hidden = spec.hidden_size, size.intermediate = spec.intermediate_size;
  size.vocab = spec.vocab_size, size.max_positions = spec.max_positions, size.kv_width = spec.kv_width();
  size.eos_token_ids = spec.eos_token_ids;
  return size;
}

ModelSize read_model_size(const std::string& model_dir) { return model_size(read_decoder_spec(ConfigReader(model_dir))); }

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "float16" || dtype == "bfloat16") return 2;
  throw Error("unknown dtype '" + dtype + "' (expected float32, float16 or bfloat16)");
}

namespace {

// Bytes the task keeps alive at its peak: per layer (on that layer's device), with the output head (on its device),
// and the MLP's inner activations (one layer's at a time, on every device).
struct Footprint {
  double per_layer = 0, head = 0, inner = 0;
};

constexpr double kScoringChunk = double(int64_t(1) << 24);  // float32 scoring temporaries are made 16 MB at a time
constexpr double kHeadCall = double(int64_t(1) << 27);      // the output head runs on 128 MB of logits at a time

Footprint footprint(const ModelSize& size, double s, const BatchShape& b) {
  // d: a layer's output per token; kv: its keys (or values) per token, fewer than d under grouped-query attention.
  const double d = double(size.hidden), kv = double(size.kv_width), V = double(size.vocab), B = double(b.rows), T = double(b.tokens);
  Footprint f;
  f.inner = 2 * B * T * double(size.intermediate) * s;  // the MLP's up-projection and its activation
  switch (b.kind) {
    case BatchShape::Kind::memorization: {
      const double S = double(b.scored), G = double(kGenerationBatches);
      const double base = (2 * kv + d) * B * T * s;  // the baseline's keys, values and outputs, kept for reuse
      // Teacher-forced pass: the kept caches of waiting generations (up to G batches' rows, and this pass's own until
      // they run), its own keys and values, the suffix logits, their float32 form and the scoring chunks.
      const double teacher_layers = base + 2 * (G + 1) * B * T * kv * s + 2 * B * T * kv * s;
      const double teacher_head = B * S * V * (s + (s == 4 ? 0 : 4)) + 4 * kScoringChunk;  // a float32 copy unless float32
      // Merged decode: the waiting caches merged layer by layer into one, then storage reserved for every step
      // (a layer at a time), and the newest pass's kept cache; the step logits and their float32 scoring.
      const double decode_layers = base + 2 * B * T * kv * s + 2 * G * B * (T + S) * kv * s;
      const double decode_head = G * B * V * (s + 4 + 4);
      // The larger of the two phases on an unsplit model.
      const double layers = double(size.layers);
      if (layers * teacher_layers + teacher_head >= layers * decode_layers + decode_head) f.per_layer = teacher_layers, f.head = teacher_head;
      else f.per_layer = decode_layers, f.head = decode_head;
      break;
    }
    case BatchShape::Kind::divergence:
      // Every layer's output of the baseline and of an intervention; the baseline's log-probabilities at every layer
      // (float32, on the head's device) and one intervened layer's logits and log-probabilities.
      f.per_layer = 2 * B * T * d * s;
      f.head = double(size.layers) * B * T * V * 4 + B * T * V * (s + 4 + 4);
      break;
    case BatchShape::Kind::loglikelihood: {
      const double held = B * T + double(b.continuation_rows) * T + double(b.continuation_positions);
      // Per layer: the baseline keeps the contexts' keys, values and outputs and every pass's keys and values (a
      // copy of its contexts' first) and outputs; an intervention holds its contexts' and its largest pass's.
      f.per_layer = (2 * held * kv + (B * T + double(b.continuation_positions)) * d + (2 * B * T + 2 * double(b.largest_pass)) * kv) * s;
      f.head = std::min(double(b.predicted) * V * s, kHeadCall) + 4 * kScoringChunk;
      f.inner = 2 * std::max(B * T, double(b.largest_pass)) * double(size.intermediate) * s;
      break;
    }
  }
  // The matrix products' working memory: a CPU's BLAS packs the largest weight it multiplies, the output head, at
  // every product (a GPU needs less; counted everywhere, plan does not know where workers run).
  f.head += V * d * s;
  return f;
}

}  // namespace

MemoryEstimate estimate_memory(const ModelSize& size, int64_t element_bytes, const BatchShape& batch, int devices) {
  const double s = double(element_bytes);
  const Footprint f = footprint(size, s, batch);
  const std::vector<int> device_of = split_layers(size.layers, devices, double(size.first_parameters),
                                                  double(size.layer_parameters), double(size.last_parameters));
  MemoryEstimate worst;
  for (int d = 0; d < devices; ++d) {
    const double layers = double(std::count(device_of.begin(), device_of.end(), d));
    MemoryEstimate e;
    e.weights = (layers * double(size.layer_parameters) + (d == 0 ? double(size.first_parameters) : 0) +
                 (d == devices - 1 ? double(size.last_parameters) : 0)) * s;
    // The head's logits on the first device too, where a tied head lives with the embeddings.
    e.activations = layers * f.per_layer + f.inner + (d == devices - 1 || d == 0 ? f.head : 0);
    if (e.total() > worst.total()) worst = e;
  }
  return worst;
}

}  // namespace memsweep
