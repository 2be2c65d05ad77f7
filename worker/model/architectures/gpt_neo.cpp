// GPT-Neo (gpt-neo-125m / 1.3B / 2.7B), as transformers' GPTNeoForCausalLM computes it
// (../shared/reference/architectures.md section 2 writes out the math):
//   h = wte[ids] + wpe[positions]; per block, sequential residual: g = h + attn(ln_1(h)), g + mlp(ln_2(g));
//   logits = lm_head . ln_f(h) (lm_head tied to wte unless config.json says otherwise).
//   attn: q, k, v projections without bias, out_proj with; scores q.k in float32 with no 1/sqrt(hd) scaling (as
//   trained), over all earlier keys in "global" layers and the last window_size in "local" ones (attention_types).
//   mlp: c_proj(gelu_new(c_fc(u))).
// Tensors: transformer.wte.weight, transformer.wpe.weight, transformer.h.N.{ln_1, attn.attention.{q_proj, k_proj,
// v_proj, out_proj}, ln_2, mlp.c_fc, mlp.c_proj}.*, transformer.ln_f.*, lm_head.weight (absent when tied).
#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_gpt_neo(const ConfigReader& config) {
  DecoderSpec c;
  c.vocab_size = config.require_int("vocab_size");
  c.hidden_size = config.require_int("hidden_size");
  c.num_layers = config.require_int("num_layers");
  c.num_heads = config.require_int("num_heads");
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0)
    config.fail("vocab_size/hidden_size/num_layers/num_heads", "must be positive");
  if (c.hidden_size % c.num_heads != 0)
    config.fail("num_heads", std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
  c.num_kv_heads = c.num_heads;
  c.head_size = c.hidden_size / c.num_heads;
  c.intermediate_size = config.get_int("intermediate_size", 4 * c.hidden_size);
  c.max_positions = config.get_int("max_position_embeddings", 2048);
  const int64_t window = config.get_int("window_size", 256);
  if (window < 1) config.fail("window_size", "must be at least 1");
  c.norm_eps = config.get_double("layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  c.eos_token_ids = config.get_int_list("eos_token_id");
  const std::string activation = config.get_string("activation_function", "gelu_new");
  if (activation != "gelu_new") config.fail("activation_function", "'" + activation + "' is not supported (GPT-Neo uses 'gelu_new')");
  c.activation = Activation::gelu_tanh;

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
        c.windows.push_back(kind == "local" ? window : 0);
      }
    }
  }
  if (int64_t(c.windows.size()) != c.num_layers)
    config.fail("attention_types", "expands to " + std::to_string(c.windows.size()) + " layers, but num_layers is " +
                                       std::to_string(c.num_layers));

  c.parallel_residual = false;
  c.qkv_layout = QKVLayout::separate;
  c.qkv_bias = false, c.out_bias = true, c.mlp_bias = true;
  c.attention_scale = 1;
  c.float32_scores = true;
  c.positions = Positions::learned;

  c.embedding_name = "transformer.wte.weight", c.position_embedding_name = "transformer.wpe.weight";
  c.layer_prefix = "transformer.h.";
  c.attention_norm_name = "ln_1", c.mlp_norm_name = "ln_2";
  c.q_name = "attn.attention.q_proj", c.k_name = "attn.attention.k_proj", c.v_name = "attn.attention.v_proj";
  c.out_name = "attn.attention.out_proj";
  c.up_name = "mlp.c_fc", c.down_name = "mlp.c_proj";
  c.final_norm_name = "transformer.ln_f";
  c.head_names = {"lm_head.weight"};
  c.skipped_suffixes = {"attn.attention.bias", "attn.attention.masked_bias"};
  return c;
}

}  // namespace memsweep
