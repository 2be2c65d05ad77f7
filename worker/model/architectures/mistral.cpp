// Mistral, as transformers' MistralForCausalLM computes it: Llama's block (architectures/llama.cpp) without biases,
// every layer's keys limited to the last sliding_window positions, the query's own included (null: all before it).
#include "worker/model/spec.h"

namespace memsweep {

DecoderSpec read_mistral(const ConfigReader& config) {
  DecoderSpec c = read_llama_family(config);
  c.qkv_bias = c.out_bias = c.mlp_bias = false;  // MistralConfig has no bias keys
  // Absent: MistralConfig's default, 4096; null: no window.
  const int64_t window = config.json().contains("sliding_window") ? config.get_int("sliding_window", 0) : 4096;
  if (config.has("sliding_window") && window < 1) config.fail("sliding_window", "must be at least 1 (or null)");
  c.windows.assign(size_t(c.num_layers), window);
  return c;
}

}  // namespace memsweep
