// The Llama family (Llama 2, Llama 3 / 3.1 / 3.2), as transformers' LlamaForCausalLM computes it:
//   h = embed_tokens[ids]; per block g = h + attn(RMSNorm1(h)), g + mlp(RMSNorm2(g)); logits = lm_head . RMSNorm_f(h)
//   (lm_head tied to embed_tokens where tie_word_embeddings says so).
//   RMSNorm(x) = weight * (x / sqrt(mean(x^2) + eps)), the division in float32, cast back before the weight.
//   attn: q, k, v, o projections (biases where attention_bias); grouped-query: H query heads share K = num_key_value_heads
//   key/value heads, query head j reading KV head j / (H / K); rotary ("rotate half") over the whole head_dim with
//   rope_theta, its inverse frequencies scaled as rope_type linear or llama3 says; scores q.k / sqrt(hd), float32
//   softmax; o_proj(heads concatenated).
//   mlp: down_proj(silu(gate_proj(u)) * up_proj(u)) (biases where mlp_bias).
//   The intervention: a short-circuited block gives query head j the value of its own position from KV head j / (H / K),
//   o_proj of those (its bias kept), and computes no q or k; a zeroed block adds nothing (o_proj's bias included).
// Tensors: model.embed_tokens.weight, model.layers.N.{input_layernorm, post_attention_layernorm}.weight,
// model.layers.N.self_attn.{q,k,v,o}_proj.*, model.layers.N.mlp.{gate,up,down}_proj.*, model.norm.weight,
// lm_head.weight (absent when tied).
#include "worker/model/spec.h"

namespace memsweep {

namespace {
double number(const ConfigReader& config, const std::string& key, const nlohmann::json& object, const char* name) {
  if (!object.contains(name) || !object[name].is_number()) config.fail(key, std::string("needs a numeric ") + name + ", found " + object.dump());
  return object[name].get<double>();
}
}  // namespace

double read_rope(const ConfigReader& config, DecoderSpec& spec, bool scaling) {
  spec.positions = Positions::rotary;
  std::string key = "rope_parameters";
  std::optional<nlohmann::json> rope = config.get_object(key);
  if (rope) {
    spec.rotary_base = number(config, key, *rope, "rope_theta");
  } else {
    spec.rotary_base = config.get_double("rope_theta", 10000);
    key = "rope_scaling";
    rope = config.get_object(key);
  }
  if (!rope) return config.get_double("partial_rotary_factor", 1);
  if (!rope->is_object()) config.fail(key, "expected an object, found " + rope->dump());
  const std::string type = rope->value("rope_type", rope->value("type", std::string("default")));
  if (type == "linear" && scaling) {
    spec.rope_scaling = RopeScaling::linear;
    spec.rope_factor = number(config, key, *rope, "factor");
  } else if (type == "llama3" && scaling) {
    spec.rope_scaling = RopeScaling::llama3;
    spec.rope_factor = number(config, key, *rope, "factor");
    spec.rope_low_freq_factor = number(config, key, *rope, "low_freq_factor");
    spec.rope_high_freq_factor = number(config, key, *rope, "high_freq_factor");
    spec.rope_original_max_positions = rope->contains("original_max_position_embeddings")
                                           ? number(config, key, *rope, "original_max_position_embeddings")
                                           : double(config.get_int("max_position_embeddings", 2048));
    if (spec.rope_high_freq_factor == spec.rope_low_freq_factor) config.fail(key, "high_freq_factor equals low_freq_factor");
  } else if (type != "default") {
    config.fail(key, "rope_type '" + type + "' is not supported (" + (scaling ? "default, linear or llama3" : "only default") + ")");
  }
  if (spec.rope_factor <= 0) config.fail(key, "factor must be positive");
  return rope->contains("partial_rotary_factor") ? number(config, key, *rope, "partial_rotary_factor")
                                                 : config.get_double("partial_rotary_factor", 1);
}

DecoderSpec read_llama_family(const ConfigReader& config) {
  DecoderSpec c;
  read_sizes(config, c, "num_hidden_layers", "num_attention_heads");
  c.intermediate_size = config.require_int("intermediate_size");
  if (c.intermediate_size <= 0) config.fail("intermediate_size", "must be positive");
  c.num_kv_heads = config.get_int("num_key_value_heads", c.num_heads);
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    config.fail("num_key_value_heads", std::to_string(c.num_kv_heads) + " does not divide num_attention_heads " + std::to_string(c.num_heads));
  const std::string activation = config.get_string("hidden_act", "silu");
  if (activation != "silu") config.fail("hidden_act", "'" + activation + "' is not supported (only 'silu')");
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"})
    if (config.has(key)) config.fail(key, "logit soft-capping is not supported");
  if (read_rope(config, c, true) != 1) config.fail("partial_rotary_factor", "only 1 (rotary over whole heads) is supported");
  c.rotary_dims = c.head_size;
  if (c.rotary_dims % 2 != 0) config.fail("head_dim", "rotary needs an even head size, found " + std::to_string(c.head_size));

  c.norm = Norm::rms_norm;
  c.norm_eps = config.get_double("rms_norm_eps", 1e-6);
  c.norm_placement = NormPlacement::before;
  c.parallel_residual = false;
  c.qkv_layout = QKVLayout::separate;
  c.qkv_bias = c.out_bias = config.get_bool("attention_bias", false);
  c.mlp = Mlp::gated;
  c.mlp_bias = config.get_bool("mlp_bias", false);
  c.activation = Activation::silu;
  read_decoder_keys(config, c, /*tied=*/false);

  c.embedding_name = "model.embed_tokens.weight";
  c.layer_prefix = "model.layers.";
  c.attention_norm_name = "input_layernorm", c.mlp_norm_name = "post_attention_layernorm";
  c.q_name = "self_attn.q_proj", c.k_name = "self_attn.k_proj", c.v_name = "self_attn.v_proj", c.out_name = "self_attn.o_proj";
  c.gate_name = "mlp.gate_proj", c.up_name = "mlp.up_proj", c.down_name = "mlp.down_proj";
  c.final_norm_name = "model.norm";
  c.head_names = {"lm_head.weight"};
  c.skipped_suffixes = {"rotary_emb.inv_freq"};
  return c;
}

DecoderSpec read_llama(const ConfigReader& config) { return read_llama_family(config); }

}  // namespace memsweep
