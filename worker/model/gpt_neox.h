#pragma once
// GPT-NeoX (every Pythia model), exactly as transformers' GPTNeoXForCausalLM computes it
// (../shared/reference/architectures.md section 1 is the written-out math).
#include <memory>
#include <string>
#include <vector>

#include "worker/model/model_config.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace memsweep {

// The model, its weights taken from `weights` (load_causal_lm checks that every tensor was used).
std::unique_ptr<CausalLM> build_gpt_neox(const ConfigReader& config, WeightLoader& weights, const LoadOptions& options);

}  // namespace memsweep
