// Architectures' configurations, model sizes and the memory estimate, from config.json alone (no libtorch).
#include "worker/model/model_config.h"

#include <algorithm>

#include "worker/base/error.h"
#include "worker/base/layer_split.h"

namespace memsweep {

GPTNeoXConfig GPTNeoXConfig::read(const ConfigReader& config) {
  GPTNeoXConfig c;
  c.vocab_size = config.require_int("vocab_size");
  c.hidden_size = config.require_int("hidden_size");
  c.num_layers = config.require_int("num_hidden_layers");
  c.num_heads = config.require_int("num_attention_heads");
  c.intermediate_size = config.require_int("intermediate_size");
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.intermediate_size <= 0)
    config.fail("vocab_size/hidden_size/num_hidden_layers/num_attention_heads/intermediate_size", "must be positive");
  if (c.hidden_size % c.num_heads != 0)
    config.fail("num_attention_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
  c.head_size = c.hidden_size / c.num_heads;
  if (config.has("head_dim") && config.get_int("head_dim", 0) != c.head_size)
    config.fail("head_dim", "differs from hidden_size / num_attention_heads = " + std::to_string(c.head_size));

  const std::string activation = config.get_string("hidden_act", "gelu");
  if (activation != "gelu") config.fail("hidden_act", "'" + activation + "' is not supported (GPT-NeoX uses exact 'gelu')");

  double rotary_pct = 0.25;
  if (auto rope = config.get_object("rope_parameters")) {
    const std::string type = rope->value("rope_type", std::string("default"));
    if (type != "default") config.fail("rope_parameters", "rope_type '" + type + "' is not supported (only 'default')");
    if (!rope->contains("rope_theta") || !(*rope)["rope_theta"].is_number())
      config.fail("rope_parameters", "needs a numeric rope_theta");
    c.rotary_base = (*rope)["rope_theta"].get<double>();
    if (rope->contains("partial_rotary_factor")) {
      if (!(*rope)["partial_rotary_factor"].is_number()) config.fail("rope_parameters", "partial_rotary_factor is not a number");
      rotary_pct = (*rope)["partial_rotary_factor"].get<double>();
    }
  } else {
    c.rotary_base = config.get_double("rotary_emb_base", 10000);
    rotary_pct = config.get_double("rotary_pct", 0.25);
  }
  if (auto scaling = config.get_object("rope_scaling"))
    config.fail("rope_scaling", "rotary scaling " + scaling->dump() + " is not supported");
  if (rotary_pct < 0 || rotary_pct > 1) config.fail("rotary_pct", "must be between 0 and 1");
  c.rotary_dims = int64_t(double(c.head_size) * rotary_pct);  // Python's int(head_size * rotary_pct)
  if (c.rotary_dims % 2 != 0) config.fail("rotary_pct", "gives an odd number of rotary dims (" + std::to_string(c.rotary_dims) + ")");

  c.layer_norm_eps = config.get_double("layer_norm_eps", 1e-5);
  c.parallel_residual = config.get_bool("use_parallel_residual", true);
  c.attention_bias = config.get_bool("attention_bias", true);
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  c.max_positions = config.get_int("max_position_embeddings", 2048);
  c.eos_token_ids = config.get_int_list("eos_token_id");
  return c;
}

GPTNeoConfig GPTNeoConfig::read(const ConfigReader& config) {
  GPTNeoConfig c;
  c.vocab_size = config.require_int("vocab_size");
  c.hidden_size = config.require_int("hidden_size");
  c.num_layers = config.require_int("num_layers");
  c.num_heads = config.require_int("num_heads");
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0)
    config.fail("vocab_size/hidden_size/num_layers/num_heads", "must be positive");
  if (c.hidden_size % c.num_heads != 0)
    config.fail("num_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
  c.head_size = c.hidden_size / c.num_heads;
  c.intermediate_size = config.get_int("intermediate_size", 4 * c.hidden_size);
  c.max_positions = config.get_int("max_position_embeddings", 2048);
  c.window_size = config.get_int("window_size", 256);
  if (c.window_size < 1) config.fail("window_size", "must be at least 1");
  c.layer_norm_eps = config.get_double("layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  c.eos_token_ids = config.get_int_list("eos_token_id");
  const std::string activation = config.get_string("activation_function", "gelu_new");
  if (activation != "gelu_new") config.fail("activation_function", "'" + activation + "' is not supported (GPT-Neo uses 'gelu_new')");

  // [[["global", "local"], 12]] -> global, local, global, ... : each entry's pattern repeated its count.
  if (!config.has("attention_types")) config.fail("attention_types", "missing (a list of [pattern, repeat])");
  const auto& types = config.json().at("attention_types");
  const std::string expected = "a list of [[\"global\" | \"local\", ...], repeat] entries";
  if (!types.is_array()) config.fail("attention_types", "expected " + expected);
  for (const auto& item : types) {
    if (!item.is_array() || item.size() != 2 || !item[0].is_array() || !item[1].is_number_unsigned())
      config.fail("attention_types", "entry " + item.dump() + " is not [pattern, repeat]; expected " + expected);
    for (uint64_t r = 0; r < item[1].get<uint64_t>(); ++r) {
      for (const auto& kind : item[0]) {
        if (kind != "global" && kind != "local") config.fail("attention_types", "unknown attention type " + kind.dump());
        c.local_layers.push_back(kind == "local");
      }
    }
  }
  if (int64_t(c.local_layers.size()) != c.num_layers)
    config.fail("attention_types", "expands to " + std::to_string(c.local_layers.size()) + " layers, but num_layers is " +
                                       std::to_string(c.num_layers));
  return c;
}

ModelSize read_model_size(const std::string& model_dir) {
  ConfigReader config(model_dir);
  ModelSize size;
  size.architecture = config.require_string("model_type");
  if (size.architecture == "gpt_neox") {
    const GPTNeoXConfig c = GPTNeoXConfig::read(config);
    const int64_t d = c.hidden_size, bias = c.attention_bias ? 1 : 0;
    const int64_t per_layer = 2 * 2 * d                          // input and post-attention layer norms
                              + 3 * d * d + bias * 3 * d + d * d + bias * d  // query_key_value, dense
                              + d * c.intermediate_size + c.intermediate_size + c.intermediate_size * d + d;  // MLP
    size.first_parameters = c.vocab_size * d;
    size.layer_parameters = per_layer;
    size.last_parameters = 2 * d + (c.tie_word_embeddings ? 0 : c.vocab_size * d);
    size.parameters = size.first_parameters + c.num_layers * per_layer + size.last_parameters;
    size.layers = c.num_layers, size.hidden = d, size.intermediate = c.intermediate_size, size.vocab = c.vocab_size;
    size.max_positions = c.max_positions;
    size.eos_token_ids = c.eos_token_ids;
  } else if (size.architecture == "gpt_neo") {
    const GPTNeoConfig c = GPTNeoConfig::read(config);
    const int64_t d = c.hidden_size;
    const int64_t per_layer = 2 * 2 * d + 3 * d * d + d * d + d + d * c.intermediate_size + c.intermediate_size +
                              c.intermediate_size * d + d;
    size.first_parameters = c.vocab_size * d + c.max_positions * d;
    size.layer_parameters = per_layer;
    size.last_parameters = 2 * d + (c.tie_word_embeddings ? 0 : c.vocab_size * d);
    size.parameters = size.first_parameters + c.num_layers * per_layer + size.last_parameters;
    size.layers = c.num_layers, size.hidden = d, size.intermediate = c.intermediate_size, size.vocab = c.vocab_size;
    size.max_positions = c.max_positions;
    size.eos_token_ids = c.eos_token_ids;
  } else {
    config.fail("model_type", "'" + size.architecture + "' is not supported (supported: gpt_neox, gpt_neo)");
  }
  return size;
}

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
  const double d = double(size.hidden), V = double(size.vocab), B = double(b.rows), T = double(b.tokens);
  Footprint f;
  f.inner = 2 * B * T * double(size.intermediate) * s;  // the MLP's up-projection and its activation
  switch (b.kind) {
    case BatchShape::Kind::memorization: {
      const double S = double(b.scored), G = double(kGenerationBatches);
      const double base = 3 * B * T * d * s;  // the baseline's keys, values and outputs, kept for reuse
      // Teacher-forced pass: the kept caches of waiting generations (up to G batches' rows, and this pass's own until
      // they run), its own keys and values, the suffix logits, their float32 form and the scoring chunks.
      const double teacher_layers = base + 2 * (G + 1) * B * T * d * s + 2 * B * T * d * s;
      const double teacher_head = B * S * V * (s + (s == 4 ? 0 : 4)) + 4 * kScoringChunk;  // a float32 copy unless float32
      // Merged decode: the waiting caches merged layer by layer into one, then storage reserved for every step
      // (a layer at a time), and the newest pass's kept cache; the step logits and their float32 scoring.
      const double decode_layers = base + 2 * B * T * d * s + 2 * G * B * (T + S) * d * s;
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
      f.per_layer = (2 * held + B * T + double(b.continuation_positions) + 2 * B * T + 2 * double(b.largest_pass)) * d * s;
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
