#include "worker/model/generate.h"

#include <limits>

#include "worker/base/error.h"

namespace memsweep {

torch::Tensor greedy_choice(const torch::Tensor& logits, const std::vector<int64_t>& banned, torch::Tensor* gap) {
  torch::Tensor scores = logits.to(torch::kFloat32);
  if (!banned.empty()) {
    scores = scores.clone();
    for (int64_t id : banned)
      if (id >= 0 && id < scores.size(-1)) scores.select(-1, id).fill_(-std::numeric_limits<float>::infinity());
  }
  if (gap) {
    auto top = scores.topk(2, -1);
    *gap = std::get<0>(top).select(-1, 0) - std::get<0>(top).select(-1, 1);
  }
  return scores.argmax(-1);  // first maximal index: ties go to the lowest id
}

std::vector<GreedyRow> greedy_generate(CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                       const GreedyOptions& options) {
  if (options.new_tokens < 1) throw Error("the number of new tokens must be at least 1");
  const std::vector<int64_t> banned = options.mask_eos ? model.eos_token_ids() : std::vector<int64_t>{};
  std::vector<GreedyRow> rows(prompts.size());
  const size_t batch_size = size_t(std::max(1, options.batch_size));
  for (size_t first = 0; first < prompts.size(); first += batch_size) {
    const int64_t count = int64_t(std::min(batch_size, prompts.size() - first));
    PaddedBatch batch = left_pad(prompts, first, size_t(count));
    torch::Tensor mask = batch.mask;
    KVCache cache;
    torch::Tensor step_input = batch.ids;
    for (int step = 0; step < options.new_tokens; ++step) {
      torch::Tensor logits = model.forward(step_input, batch.padded ? mask : torch::Tensor(), &cache);
      torch::Tensor gap;
      torch::Tensor next = greedy_choice(logits.select(1, logits.size(1) - 1), banned, &gap).to(torch::kCPU);
      gap = gap.to(torch::kCPU);
      for (int64_t i = 0; i < count; ++i) {
        rows[first + size_t(i)].tokens.push_back(next[i].item<int64_t>());
        rows[first + size_t(i)].top2_gap.push_back(gap[i].item<float>());
      }
      step_input = next.view({count, 1});
      if (batch.padded) mask = torch::cat({mask, torch::ones({count, 1}, torch::kInt64)}, 1);
    }
  }
  return rows;
}

}  // namespace memsweep
