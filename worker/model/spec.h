#pragma once
// An architecture as memsweep sees it: one decoder (worker/model/decoder.cpp) whose blocks differ only in the
// switches and weight names of a DecoderSpec, read from config.json by the architecture's reader
// (worker/model/architectures/*.cpp). No libtorch: plan, rank 0 and the dataset readers ask it for a model's layers,
// parameters, KV-cache width and the tensors its checkpoint must hold; the model builds from the same spec.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/config_reader.h"

namespace memsweep {

enum class Activation { gelu, gelu_tanh };  // exact erf GELU; the tanh form (transformers' gelu_new)
enum class QKVLayout {
  fused_interleaved,  // one [3 * H * hd, d] projection, per head q, k, v in turn (GPT-NeoX)
  separate,           // q, k and v projections of their own
};
enum class Positions { rotary, learned };  // rotary on q and k of every layer; a learned table added to the embeddings

// What each checkpoint tensor is to the decoder.
enum class Role {
  embedding, position_embedding, final_norm_weight, final_norm_bias, head,  // outside the blocks
  input_norm_weight, input_norm_bias, post_attention_norm_weight, post_attention_norm_bias,
  qkv_weight, qkv_bias, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, out_weight, out_bias,
  up_weight, up_bias, down_weight, down_bias,
};

struct TensorSpec {
  Role role;
  std::vector<std::string> names;  // the checkpoint's name; alternatives in order of preference
  std::vector<int64_t> shape;
  int64_t elements() const;
};

struct DecoderSpec {
  std::string model_type;  // config.json's
  int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_size = 0;
  int64_t intermediate_size = 0;
  int64_t max_positions = 2048;  // max_position_embeddings (the learned table's rows)
  std::vector<int64_t> eos_token_ids;

  // Blocks: norm placement and residual, attention, MLP.
  double norm_eps = 1e-5;         // layer norms (weight and bias)
  bool parallel_residual = false;  // h + attn(N1(h)) + mlp(N2(h)); else g = h + attn(N1(h)), g + mlp(N2(g))
  QKVLayout qkv_layout = QKVLayout::separate;
  bool qkv_bias = true, out_bias = true, mlp_bias = true;
  Activation activation = Activation::gelu;
  // Scores are q.k * attention_scale; float32_scores: q and k in float32 and the eager formula whatever the dtype
  // (GPT-Neo, trained so), else the activation dtype with a float32 softmax, or libtorch's fused kernel.
  double attention_scale = 1;
  bool float32_scores = false;
  // Keys visible from a query of each layer, itself included: 0 all before it (global), w the last w (local).
  std::vector<int64_t> windows;

  Positions positions = Positions::rotary;
  int64_t rotary_dims = 0;  // the rotated leading dims of each head
  double rotary_base = 10000;

  bool tie_word_embeddings = false;  // the output head is the embedding table

  // Checkpoint names: outside the blocks, and within block N (layer_prefix + N + "." + the suffix).
  std::string embedding_name, position_embedding_name, final_norm_name, layer_prefix;
  std::vector<std::string> head_names;  // e.g. {"embed_out.weight", "lm_head.weight"}
  std::string input_norm_name, post_attention_norm_name, qkv_name, q_name, k_name, v_name, out_name, up_name, down_name;
  std::vector<std::string> skipped_suffixes;  // buffers older files carry; skipped by name

  // The tensors of each part: with the first layer (embeddings), of block `layer`, with the last layer (final norm,
  // an untied head). Each its role, names and shape: what the loader takes and the sizes below count.
  std::vector<TensorSpec> first_tensors() const;
  std::vector<TensorSpec> layer_tensors(int64_t layer) const;
  std::vector<TensorSpec> last_tensors() const;

  int64_t kv_width() const { return num_kv_heads * head_size; }  // a token's keys (or values) in one layer
};

// Reads MODEL_DIR/config.json through its model_type's reader. Errors name config.json and the key: an unknown
// model_type (listing the known ones), a missing or bad value, settings that change the math and are not
// implemented.
DecoderSpec read_decoder_spec(const ConfigReader& config);

// Architecture readers: config.json's keys into the spec (worker/model/architectures/).
DecoderSpec read_gpt_neox(const ConfigReader& config);
DecoderSpec read_gpt_neo(const ConfigReader& config);

}  // namespace memsweep
