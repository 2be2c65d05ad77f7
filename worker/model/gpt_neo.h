#pragma once
// GPT-Neo (gpt-neo-125m / 1.3B / 2.7B), exactly as transformers' GPTNeoForCausalLM computes it
// (../shared/reference/architectures.md section 2 is the written-out math).
#include <memory>
#include <string>
#include <vector>

#include "worker/model/model_config.h"
#include "worker/model/model.h"
#include "worker/model/weights.h"

namespace memsweep {

// The model, its weights taken from `weights` (load_causal_lm checks that every tensor was used).
std::unique_ptr<CausalLM> build_gpt_neo(const ConfigReader& config, WeightLoader& weights, const LoadOptions& options);

}  // namespace memsweep
