// GPT-NeoX (every Pythia model), as transformers' GPTNeoXForCausalLM computes it
// (../shared/reference/architectures.md section 1 writes out the math):
//   h = embed_in[ids]; per block, parallel residual (all Pythia): h + attn(LN1(h)) + mlp(LN2(h)), or sequential
//   (use_parallel_residual false): g = h + attn(LN1(h)), g + mlp(LN2(g)); logits = embed_out . LN_f(h).
//   attn: one fused projection, head-interleaved (per head q, k, v); rotary ("rotate half") on the first
//   int(hd * rotary_pct) dims of q and k; scores q.k / sqrt(hd), float32 softmax; dense(heads concatenated).
//   mlp: dense_4h_to_h(gelu(dense_h_to_4h(u))), exact erf GELU.
// Tensors: gpt_neox.embed_in.weight, gpt_neox.layers.N.{input_layernorm, post_attention_layernorm,
// attention.query_key_value, attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h}.*, gpt_neox.final_layer_norm.*,
// embed_out.weight (transformers >= 5.14 calls it lm_head in memory; files keep embed_out).
#include <cmath>

#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_gpt_neox(const ConfigReader& config) {
  DecoderSpec c;
  c.vocab_size = config.require_int("vocab_size");
  c.hidden_size = config.require_int("hidden_size");
  c.num_layers = config.require_int("num_hidden_layers");
  c.num_heads = config.require_int("num_attention_heads");
  c.intermediate_size = config.require_int("intermediate_size");
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.intermediate_size <= 0)
    config.fail("vocab_size/hidden_size/num_hidden_layers/num_attention_heads/intermediate_size", "must be positive");
  if (c.hidden_size % c.num_heads != 0)
    config.fail("num_attention_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
  c.num_kv_heads = c.num_heads;
  c.head_size = c.hidden_size / c.num_heads;
  if (config.has("head_dim") && config.get_int("head_dim", 0) != c.head_size)
    config.fail("head_dim", "differs from hidden_size / num_attention_heads = " + std::to_string(c.head_size));

  const std::string activation = config.get_string("hidden_act", "gelu");
  if (activation != "gelu") config.fail("hidden_act", "'" + activation + "' is not supported (GPT-NeoX uses exact 'gelu')");
  c.activation = Activation::gelu;

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
  c.positions = Positions::rotary;
  c.rotary_dims = int64_t(double(c.head_size) * rotary_pct);  // Python's int(head_size * rotary_pct)
  if (c.rotary_dims % 2 != 0) config.fail("rotary_pct", "gives an odd number of rotary dims (" + std::to_string(c.rotary_dims) + ")");

  c.norm_eps = config.get_double("layer_norm_eps", 1e-5);
  c.parallel_residual = config.get_bool("use_parallel_residual", true);
  c.qkv_layout = QKVLayout::fused_interleaved;
  c.qkv_bias = c.out_bias = config.get_bool("attention_bias", true);
  c.mlp_bias = true;
  c.attention_scale = std::pow(double(c.head_size), -0.5);
  c.windows.assign(size_t(c.num_layers), 0);
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  c.max_positions = config.get_int("max_position_embeddings", 2048);
  c.eos_token_ids = config.get_int_list("eos_token_id");

  c.embedding_name = "gpt_neox.embed_in.weight";
  c.layer_prefix = "gpt_neox.layers.";
  c.attention_norm_name = "input_layernorm", c.mlp_norm_name = "post_attention_layernorm";
  c.qkv_name = "attention.query_key_value", c.out_name = "attention.dense";
  c.up_name = "mlp.dense_h_to_4h", c.down_name = "mlp.dense_4h_to_h";
  c.final_norm_name = "gpt_neox.final_layer_norm";
  c.head_names = {"embed_out.weight", "lm_head.weight"};
  c.skipped_suffixes = {"attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"};
  return c;
}

}  // namespace memsweep
