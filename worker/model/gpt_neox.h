#pragma once
// GPT-NeoX (every Pythia model), exactly as transformers' GPTNeoXForCausalLM computes it
// (../shared/reference/architectures.md section 1 is the written-out math).
#include <memory>
#include <string>
#include <vector>

#include "worker/model/config_reader.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace memsweep {

struct GPTNeoXConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t head_size = 0;          // hidden_size / num_heads
  int64_t intermediate_size = 0;  // 4 x hidden in Pythia
  int64_t rotary_dims = 0;        // int(head_size x rotary_pct), the rotated leading dims of each head
  double rotary_base = 10000;     // rotary_emb_base (4.x) or rope_parameters.rope_theta (5.x)
  double layer_norm_eps = 1e-5;
  bool parallel_residual = true;  // use_parallel_residual: true for every Pythia model
  bool attention_bias = true;
  bool tie_word_embeddings = false;
  std::vector<int64_t> eos_token_ids;

  // Errors name config.json and the key; refuses settings that change the math and are not implemented
  // (another activation, rope scaling).
  static GPTNeoXConfig read(const ConfigReader& config);
};

// The model, its weights taken from `weights` (load_causal_lm checks that every tensor was used).
std::unique_ptr<CausalLM> build_gpt_neox(const ConfigReader& config, WeightLoader& weights, const LoadOptions& options);

}  // namespace memsweep
