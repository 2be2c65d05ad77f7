// Qwen2, as transformers' Qwen2ForCausalLM computes it: Llama's block (architectures/llama.cpp) with biases on the q, k
// and v projections and none on o_proj or the MLP. Sliding-window layers (use_sliding_window) are refused.
#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_qwen2(const ConfigReader& config) {
  DecoderSpec c = read_llama_family(config);
  c.qkv_bias = true, c.out_bias = false, c.mlp_bias = false;
  if (config.get_bool("use_sliding_window", false)) config.fail("use_sliding_window", "true is not supported");
  if (config.has("layer_types"))
    for (const auto& type : config.json().at("layer_types"))
      if (type != "full_attention") config.fail("layer_types", "only \"full_attention\" layers are supported, found " + type.dump());
  return c;
}

}  // namespace memsweep
