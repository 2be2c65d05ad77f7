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

enum class Activation { gelu, gelu_tanh, silu };  // exact erf GELU; the tanh form (transformers' gelu_new); SiLU
enum class Norm {
  layer_norm,                // weight and bias
  rms_norm,                  // x / rms(x) in float32, cast back, times the weight (Llama)
  rms_norm_float32_product,  // the weight's product in float32 too, then cast back (OLMo 2)
};
enum class NormPlacement {
  before,  // each sublayer reads the normed residual stream (pre-norm)
  after,   // each sublayer reads the residual stream and its output is normed before it is added (OLMo 2)
};
enum class Mlp { plain, gated };  // down(act(up(u))); down(act(gate(u)) * up(u))
enum class RopeScaling { none, linear, llama3 };
enum class QKVLayout {
  fused_interleaved,  // one [3 * H * hd, d] projection, per head q, k, v in turn (GPT-NeoX)
  separate,           // q, k and v projections of their own
};
enum class Positions { rotary, learned };  // rotary on q and k of every layer; a learned table added to the embeddings

// What each checkpoint tensor is to the decoder.
enum class Role {
  embedding, position_embedding, final_norm_weight, final_norm_bias, head,  // outside the blocks
  attention_norm_weight, attention_norm_bias, mlp_norm_weight, mlp_norm_bias,
  qkv_weight, qkv_bias, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, out_weight, out_bias,
  q_norm_weight, k_norm_weight, gate_weight, gate_bias, up_weight, up_bias, down_weight, down_bias,
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

  // Blocks: norms and residual, attention, MLP. Each block has an attention norm and an MLP norm (N1, N2).
  Norm norm = Norm::layer_norm;
  double norm_eps = 1e-5;
  NormPlacement norm_placement = NormPlacement::before;
  // before: parallel h + attn(N1(h)) + mlp(N2(h)), or sequential g = h + attn(N1(h)), g + mlp(N2(g));
  // after (sequential only): g = h + N1(attn(h)), g + N2(mlp(g)).
  bool parallel_residual = false;
  QKVLayout qkv_layout = QKVLayout::separate;
  bool qkv_bias = true, out_bias = true, mlp_bias = true;
  bool qk_norm = false;  // q and k projections normed (over all heads) before rotary (OLMo 2), with `norm`
  Mlp mlp = Mlp::plain;
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
  RopeScaling rope_scaling = RopeScaling::none;  // of the inverse frequencies, as transformers' rope_type
  double rope_factor = 1, rope_low_freq_factor = 1, rope_high_freq_factor = 4, rope_original_max_positions = 8192;
  bool rotary_float32 = false;  // cos and sin stay float32 and q, k rotate in float32 (OLMo 2); else the dtype's

  bool tie_word_embeddings = false;  // the output head is the embedding table

  // Checkpoint names: outside the blocks, and within block N (layer_prefix + N + "." + the suffix).
  std::string embedding_name, position_embedding_name, final_norm_name, layer_prefix;
  std::vector<std::string> head_names;  // e.g. {"embed_out.weight", "lm_head.weight"}
  std::string attention_norm_name, mlp_norm_name, qkv_name, q_name, k_name, v_name, out_name, q_norm_name, k_norm_name;
  std::string gate_name, up_name, down_name;
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

// What every reader reads alike (spec.cpp). read_sizes: vocab_size, hidden_size and the layer and head counts under
// the architecture's keys (each required and positive), head_size from head_dim or hidden_size / heads (which must
// divide it). read_decoder_keys: tie_word_embeddings (its default: `tied`), max_position_embeddings, eos_token_id; every
// layer global; scores scaled by 1/sqrt(head_size).
void read_sizes(const ConfigReader& config, DecoderSpec& spec, const char* layers_key, const char* heads_key);
void read_decoder_keys(const ConfigReader& config, DecoderSpec& spec, bool tied);

// Architecture readers: config.json's keys into the spec (worker/model/architectures/).
DecoderSpec read_gpt_neox(const ConfigReader& config);
DecoderSpec read_gpt_neo(const ConfigReader& config);
DecoderSpec read_llama(const ConfigReader& config);
DecoderSpec read_mistral(const ConfigReader& config);
DecoderSpec read_qwen2(const ConfigReader& config);
DecoderSpec read_olmo2(const ConfigReader& config);

// What the Llama family shares (architectures/llama.cpp): sizes, grouped-query heads, RMSNorm, the gated SiLU MLP,
// rotary over whole heads with rope_theta and rope scaling (rope_parameters or rope_scaling), Hub names. The
// families then set their biases, windows and norms.
DecoderSpec read_llama_family(const ConfigReader& config);
// The rotary settings of config.json: rope_parameters {rope_type, rope_theta, factor, ...} (transformers 5.x), or
// rope_theta and rope_scaling {type | rope_type, factor, ...}; `scaling`: whether linear and llama3 are allowed.
// Returns partial_rotary_factor (1 when absent). Refuses other rope types naming the key.
double read_rope(const ConfigReader& config, DecoderSpec& spec, bool scaling);

}  // namespace memsweep
