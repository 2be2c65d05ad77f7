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
#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_gpt_neox(const ConfigReader& config) {
  DecoderSpec c;
  read_sizes(config, c, "num_hidden_layers", "num_attention_heads");
  if (c.head_size * c.num_heads != c.hidden_size)
    config.fail("head_dim", "differs from hidden_size / num_attention_heads = " + std::to_string(c.hidden_size / c.num_heads));
  c.intermediate_size = config.require_int("intermediate_size");
  if (c.intermediate_size <= 0) config.fail("intermediate_size", "must be positive");

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
  read_decoder_keys(config, c, /*tied=*/false);

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
