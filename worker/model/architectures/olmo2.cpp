// OLMo 2, as transformers' Olmo2ForCausalLM computes it: Llama's attention and MLP (architectures/llama.cpp) with
//   - norms after the sublayers: g = h + RMSNorm1(attn(h)), g + RMSNorm2(mlp(g)) (post_attention_layernorm,
//     post_feedforward_layernorm; no input norm);
//   - q and k normed over all heads (q_norm, k_norm) after their projections, before rotary;
//   - its RMSNorm multiplies by the weight in float32 before casting back, and rotary runs in float32.
// A zeroed block adds nothing (RMSNorm1 of zeros is zero); a short-circuited one adds RMSNorm1(o_proj(own values)).
#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_olmo2(const ConfigReader& config) {
  DecoderSpec c = read_llama_family(config);
  c.mlp_bias = false;
  c.norm = Norm::rms_norm_float32_product;
  c.norm_eps = config.get_double("rms_norm_eps", 1e-5);  // Olmo2Config's default (Llama's is 1e-6)
  c.norm_placement = NormPlacement::after;
  c.attention_norm_name = "post_attention_layernorm", c.mlp_norm_name = "post_feedforward_layernorm";
  c.qk_norm = true;
  c.q_norm_name = "self_attn.q_norm", c.k_norm_name = "self_attn.k_norm";
  c.rotary_float32 = true;
  return c;
}

}  // namespace memsweep
