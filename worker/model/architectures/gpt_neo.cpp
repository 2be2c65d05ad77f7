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
  read_sizes(config, c, "num_layers", "num_heads");
  if (c.head_size * c.num_heads != c.hidden_size) config.fail("head_dim", "GPT-Neo's heads split hidden_size evenly");
  c.intermediate_size = config.get_int("intermediate_size", 4 * c.hidden_size);
  read_decoder_keys(config, c, /*tied=*/true);
  const int64_t window = config.get_int("window_size", 256);
  if (window < 1) config.fail("window_size", "must be at least 1");
  c.norm_eps = config.get_double("layer_norm_epsilon", 1e-5);
  const std::string activation = config.get_string("activation_function", "gelu_new");
  if (activation != "gelu_new") config.fail("activation_function", "'" + activation + "' is not supported (GPT-Neo uses 'gelu_new')");
  c.activation = Activation::gelu_tanh;

  // [[["global", "local"], 12]] -> global, local, global, ... : each entry's pattern repeated its count.
  if (!config.has("attention_types")) config.fail("attention_types", "missing (a list of [pattern, repeat])");
  const auto& types = config.json().at("attention_types");
  const std::string expected = "a list of [[\"global\" | \"local\", ...], repeat] entries";
  if (!types.is_array()) config.fail("attention_types", "expected " + expected);
  std::vector<bool> local;
  for (const auto& item : types) {
    if (!item.is_array() || item.size() != 2 || !item[0].is_array() || !item[1].is_number_unsigned())
      config.fail("attention_types", "entry " + item.dump() + " is not [pattern, repeat]; expected " + expected);
    for (uint64_t r = 0; r < item[1].get<uint64_t>(); ++r) {
      for (const auto& kind : item[0]) {
        if (kind != "global" && kind != "local") config.fail("attention_types", "unknown attention type " + kind.dump());
        local.push_back(kind == "local");
      }
    }
  }
  if (int64_t(local.size()) != c.num_layers)
    config.fail("attention_types", "expands to " + std::to_string(local.size()) + " layers, but num_layers is " +
                                       std::to_string(c.num_layers));
  for (size_t layer = 0; layer < local.size(); ++layer) c.windows[layer] = local[layer] ? window : 0;

  c.parallel_residual = false;
  c.qkv_layout = QKVLayout::separate;
  c.qkv_bias = false, c.out_bias = true, c.mlp_bias = true;
  c.attention_scale = 1;  // as trained: no 1/sqrt(hd)
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
