#pragma once
// GPT-Neo (gpt-neo-125m / 1.3B / 2.7B), exactly as transformers' GPTNeoForCausalLM computes it
// (../shared/reference/architectures.md section 2 is the written-out math).
#include <memory>
#include <string>
#include <vector>

#include "worker/model/config_reader.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace memsweep {

struct GPTNeoConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t head_size = 0;
  int64_t intermediate_size = 0;  // null in config.json means 4 x hidden
  int64_t max_positions = 2048;
  int64_t window_size = 256;      // keys visible from a local layer's query, itself included
  double layer_norm_eps = 1e-5;
  bool tie_word_embeddings = true;
  std::vector<bool> local_layers;  // attention_types expanded literally: true where the layer is "local"
  std::vector<int64_t> eos_token_ids;

  static GPTNeoConfig read(const ConfigReader& config);
};

// The model, its weights taken from `weights` (load_causal_lm checks that every tensor was used).
std::unique_ptr<CausalLM> build_gpt_neo(const ConfigReader& config, WeightLoader& weights, const LoadOptions& options);

}  // namespace memsweep
