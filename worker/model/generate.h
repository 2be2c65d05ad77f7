#pragma once
// Greedy decoding with a KV cache, as transformers' generate(do_sample=False) computes it.
#include <cstdint>
#include <vector>

#include "worker/model/model.h"

namespace memsweep {

struct GreedyOptions {
  int new_tokens = 32;
  // Mask the end-of-sequence token(s) at every step, what transformers' min_new_tokens = new_tokens does (the
  // paper's setting): argmax over the vocabulary minus EOS. Without it EOS may be chosen, and decoding still
  // runs the full new_tokens (compare with transformers up to the first EOS, where it stops).
  bool mask_eos = true;
  int batch_size = 8;  // prompts per batch, left-padded
};

struct GreedyRow {
  std::vector<int64_t> tokens;  // new_tokens ids
  // Per step, the top-1 minus top-2 logit (float32, after the EOS mask): where it is ~0, another implementation
  // rounding differently may choose the other token. 0 is an exact tie, broken to the lowest id as torch.argmax.
  std::vector<float> top2_gap;
};

std::vector<GreedyRow> greedy_generate(CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                       const GreedyOptions& options);

// argmax over the last dimension of float32 `logits` [B, V] with `banned` ids masked, ties to the lowest id;
// fills `gap` [B] with top-1 minus top-2. Shared by generation and the memorization task.
torch::Tensor greedy_choice(const torch::Tensor& logits, const std::vector<int64_t>& banned, torch::Tensor* gap);

}  // namespace memsweep

namespace memsweep {

// A cache cut down to some rows, each keeping only its first keep[i] real tokens, left-padded again to the
// longest: what a row's cache would be had it seen only those tokens. `mask` [B, T] is the cache's padding mask
// (undefined: no padding). Returns the new cache and sets *kept_mask [rows, L].
KVCache keep_prefixes(const KVCache& cache, const torch::Tensor& mask, const std::vector<int64_t>& rows,
                      const std::vector<int64_t>& keep, torch::Tensor* kept_mask);

// Greedy decoding of `steps` tokens after `first` [B] (already chosen, fed first), continuing from `cache` and its
// padding `mask` [B, cache.length]. Fills tokens and gaps [B][steps] (the first token excluded).
void continue_greedy(CausalLM& model, KVCache& cache, torch::Tensor mask, const torch::Tensor& first, int steps,
                     const std::vector<int64_t>& banned, std::vector<std::vector<int64_t>>& tokens,
                     std::vector<std::vector<float>>& gaps);

}  // namespace memsweep
