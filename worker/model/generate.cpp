#include "worker/model/generate.h"

#include <algorithm>
#include <limits>

#include "worker/base/error.h"

namespace memsweep {

namespace {

// Each row's first maximum and top-1 minus top-2 of x [R, V]. topk over a whole vocabulary runs an index-tracking
// loop that costs a CPU sweep ~4 % of its time; the maxima of 64-wide blocks are one vectorised reduction, after which
// only [R, V / 64] block maxima and each row's one block of 64 remain. The first block holding the maximum holds the
// first maximum; the second-largest value is that block's second largest or the second-largest block maximum (which
// is the maximum again when two blocks hold it). Exact: only comparisons, no arithmetic before the gap.
torch::Tensor first_max_and_gap(const torch::Tensor& x, torch::Tensor* gap) {
  constexpr int64_t W = 64;
  const int64_t R = x.size(0), V = x.size(1), full = V / W;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<torch::Tensor> parts;
  if (full > 0) parts.push_back(x.narrow(1, 0, full * W).view({R, full, W}).amax(-1));
  if (V % W != 0) parts.push_back(x.narrow(1, full * W, V % W).amax(-1, true));
  const torch::Tensor block_max = parts.size() == 1 ? parts[0] : torch::cat(parts, 1);  // [R, blocks]
  const torch::Tensor block = block_max.argmax(-1);                                      // the first holding the maximum
  const torch::Tensor columns = block.unsqueeze(1) * W + torch::arange(W, block.options());
  const torch::Tensor values = x.gather(1, columns.clamp_max(V - 1)).masked_fill(columns >= V, -inf);  // [R, W]
  const torch::Tensor in_block = std::get<0>(values.topk(2, -1));
  torch::Tensor second = in_block.select(1, 1);
  if (block_max.size(1) > 1) second = torch::maximum(second, std::get<0>(block_max.topk(2, -1)).select(1, 1));
  *gap = in_block.select(1, 0) - second;
  return block * W + values.argmax(-1);
}

}  // namespace

torch::Tensor greedy_choice(const torch::Tensor& logits, const std::vector<int64_t>& banned, torch::Tensor* gap) {
  torch::Tensor scores = logits.to(torch::kFloat32);
  if (!banned.empty()) {
    scores = scores.clone();
    for (int64_t id : banned)
      if (id >= 0 && id < scores.size(-1)) scores.select(-1, id).fill_(-std::numeric_limits<float>::infinity());
  }
  if (!gap) return scores.argmax(-1);  // first maximal index: ties go to the lowest id
  if (!scores.device().is_cpu()) {
    // On a GPU a decode step is bound by kernel launches: argmax (the first maximum) and topk's two values are three
    // kernels, where first_max_and_gap's block maxima (for CPUs, where topk's index-tracking loop is slow) take ~16.
    const torch::Tensor top = std::get<0>(scores.topk(2, -1));
    *gap = top.select(-1, 0) - top.select(-1, 1);
    return scores.argmax(-1);
  }
  const int64_t V = scores.size(-1);
  const torch::Tensor best = first_max_and_gap(scores.reshape({-1, V}), gap);
  auto shape = scores.sizes().vec();
  shape.pop_back();
  *gap = gap->view(shape);
  return best.view(shape);
}

KVCache keep_prefixes(const KVCache& cache, const torch::Tensor& mask, const std::vector<int64_t>& rows,
                      const std::vector<int64_t>& keep, torch::Tensor* kept_mask) {
  const int64_t T = cache.length, R = int64_t(rows.size());
  const int64_t L = *std::max_element(keep.begin(), keep.end());
  std::vector<int64_t> source(size_t(R * L), 0);
  auto new_mask = torch::zeros({R, L}, torch::kInt64);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t row = rows[size_t(r)];
    const int64_t real = mask.defined() ? mask[row].sum().item<int64_t>() : T;
    const int64_t pad_before = T - real;  // left padding of the row in the old cache
    const int64_t pad_after = L - keep[size_t(r)];
    for (int64_t j = 0; j < keep[size_t(r)]; ++j) source[size_t(r * L + pad_after + j)] = pad_before + j;
    new_mask[r].narrow(0, pad_after, keep[size_t(r)]).fill_(1);
  }
  KVCache kept;
  kept.length = L;
  kept.keys.resize(cache.keys.size());
  kept.values.resize(cache.values.size());
  for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
    if (!cache.keys[layer].defined()) continue;
    const auto& k = cache.keys[layer];
    auto row_index = torch::tensor(rows, torch::kInt64).to(k.device());
    auto index = torch::tensor(source, torch::kInt64).view({R, 1, L, 1}).to(k.device()).expand({R, k.size(1), L, k.size(3)});
    kept.keys[layer] = k.index_select(0, row_index).gather(2, index);
    kept.values[layer] = cache.values[layer].index_select(0, row_index).gather(2, index);
  }
  *kept_mask = new_mask;
  return kept;
}

void continue_greedy(CausalLM& model, KVCache& cache, torch::Tensor mask, const torch::Tensor& first, int steps,
                     const std::vector<int64_t>& banned, std::vector<std::vector<int64_t>>& tokens,
                     std::vector<std::vector<float>>& gaps) {
  const int64_t count = first.size(0);
  tokens.assign(size_t(count), {});
  gaps.assign(size_t(count), {});
  // Tokens, mask and gaps stay on the model's device until the end: a step's input is the previous step's argmax
  // where it was computed, so a GPU is never waited for between steps (a copy to the host would make the host wait
  // for each step before it could queue the next one).
  const torch::Device device = model.device();
  torch::Tensor step_input = first.to(device, torch::kInt64).view({count, 1});
  cache.reserve(steps);
  if (mask.defined()) mask = mask.to(device);
  std::vector<torch::Tensor> chosen, chosen_gaps;
  for (int step = 0; step < steps; ++step) {
    if (mask.defined()) mask = torch::cat({mask, torch::ones({count, 1}, mask.options())}, 1);
    ForwardRequest request(step_input, mask);
    request.cache = &cache, request.logits_last = 1;
    torch::Tensor logits = model.forward(request);
    torch::Tensor gap;
    torch::Tensor next = greedy_choice(logits.select(1, logits.size(1) - 1), banned, &gap);
    chosen.push_back(next), chosen_gaps.push_back(gap);
    step_input = next.to(device).view({count, 1});
  }
  if (steps <= 0) return;
  const torch::Tensor all = torch::stack(chosen, 1).to(torch::kCPU), all_gaps = torch::stack(chosen_gaps, 1).to(torch::kCPU);
  auto next_at = all.accessor<int64_t, 2>();
  auto gap_at = all_gaps.accessor<float, 2>();
  for (int64_t i = 0; i < count; ++i)
    for (int step = 0; step < steps; ++step) {
      tokens[size_t(i)].push_back(next_at[i][step]);
      gaps[size_t(i)].push_back(gap_at[i][step]);
    }
}

std::vector<GreedyRow> greedy_generate(CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                       const GreedyOptions& options) {
  if (options.new_tokens < 1) throw Error("the number of new tokens must be at least 1");
  const std::vector<int64_t> banned = options.mask_eos ? model.eos_token_ids() : std::vector<int64_t>{};
  std::vector<GreedyRow> rows(prompts.size());
  const size_t batch_size = size_t(std::max(1, options.batch_size));
  for (size_t first = 0; first < prompts.size(); first += batch_size) {
    const size_t count = std::min(batch_size, prompts.size() - first);
    PaddedBatch batch = left_pad(prompts, first, count);
    torch::Tensor mask = batch.padded ? batch.mask : torch::Tensor();
    KVCache cache;
    ForwardRequest request(batch.ids, mask);
    request.cache = &cache, request.logits_last = 1;
    torch::Tensor logits = model.forward(request);
    torch::Tensor gap;
    torch::Tensor next = greedy_choice(logits.select(1, logits.size(1) - 1), banned, &gap).to(torch::kCPU);
    gap = gap.to(torch::kCPU);
    std::vector<std::vector<int64_t>> tokens;
    std::vector<std::vector<float>> gaps;
    continue_greedy(model, cache, mask, next, options.new_tokens - 1, banned, tokens, gaps);
    for (size_t i = 0; i < count; ++i) {
      GreedyRow& row = rows[first + i];
      row.tokens.push_back(next[int64_t(i)].item<int64_t>());
      row.top2_gap.push_back(gap[int64_t(i)].item<float>());
      row.tokens.insert(row.tokens.end(), tokens[i].begin(), tokens[i].end());
      row.top2_gap.insert(row.top2_gap.end(), gaps[i].begin(), gaps[i].end());
    }
  }
  return rows;
}

}  // namespace memsweep
