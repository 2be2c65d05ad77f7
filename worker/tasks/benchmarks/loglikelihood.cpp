#include "worker/tasks/benchmarks/loglikelihood.h"

#include <algorithm>
#include <limits>
#include <map>

#include "worker/base/error.h"
#include "worker/model/generate.h"
#include "worker/tasks/benchmarks/python_text.h"
#include "worker/tasks/task.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {

namespace {

// A planned batch as tensors: the contexts left-padded; the continuations (without their last token, whose
// prediction nobody reads) of the requests with two or more continuation tokens, in passes of similar lengths
// (longest first, cut where it saves the most padding: continuation_pass_ends), each right-padded (the padding comes
// after every real token, so causal attention never lets a real token see it), each row after its context's keys
// and values. The batch's predicted tokens are, in order: each request's first continuation token (predicted by its
// context's last position), then every pass's, row by row.
struct ContinuationPass {
  torch::Tensor ids, mask, context;  // [R, L], [R, Tc + L] (undefined when nothing is padded), [R]
  torch::Tensor predicting;          // positions of the flattened [R * L] that predict a token
};
struct BatchInputs {
  torch::Tensor context_ids, context_mask;  // [C, Tc]; mask undefined when no context is padded
  torch::Tensor first_context;              // per request (batch order): its context's row
  std::vector<ContinuationPass> passes;
  torch::Tensor targets;  // [N] (CPU): the token each predicted token is scored against, in the order above
  // The predicted token (its place in that order) of each continuation token after the first, request by request.
  torch::Tensor rest_order;
};

BatchInputs batch_inputs(const PlannedBatch& batch, const std::vector<TokenRequest>& requests, torch::Device device) {
  BatchInputs in;
  PaddedBatch contexts = left_pad(batch.contexts, 0, batch.contexts.size());
  in.context_ids = contexts.ids.to(device);
  if (contexts.padded) in.context_mask = contexts.mask.to(device);
  struct Row {
    size_t request;
    int64_t context, fed, order;  // order: the request's place in the batch
  };
  std::vector<Row> rows;
  std::vector<int64_t> first_context, targets;
  int64_t order = 0;
  for (size_t c = 0; c < batch.requests.size(); ++c)
    for (size_t r : batch.requests[c]) {
      first_context.push_back(int64_t(c));
      targets.push_back(requests[r].continuation[0]);
      const int64_t fed = int64_t(requests[r].continuation.size()) - 1;
      if (fed > 0) rows.push_back({r, int64_t(c), fed, order});
      ++order;
    }
  in.first_context = torch::tensor(first_context, torch::kInt64);
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.fed > b.fed; });
  std::vector<int64_t> fed;
  for (const Row& row : rows) fed.push_back(row.fed);
  const std::vector<size_t> ends = continuation_pass_ends(fed);
  // Where each request's second token lands among the predicted tokens.
  std::vector<int64_t> first_output(size_t(order), -1);
  int64_t outputs = order;
  size_t begin = 0;
  for (size_t end : ends) {
    const int64_t length = rows[begin].fed, count = int64_t(end - begin);
    std::vector<int64_t> ids(size_t(count * length), 0), context_of_row, predicting;
    for (int64_t i = 0; i < count; ++i) {
      const Row& row = rows[begin + size_t(i)];
      const auto& continuation = requests[row.request].continuation;
      std::copy(continuation.begin(), continuation.end() - 1, ids.begin() + i * length);
      context_of_row.push_back(row.context);
      first_output[size_t(row.order)] = outputs;
      for (int64_t j = 0; j < row.fed; ++j) predicting.push_back(i * length + j), targets.push_back(continuation[size_t(j + 1)]), ++outputs;
    }
    ContinuationPass pass;
    pass.ids = torch::tensor(ids, torch::kInt64).view({count, length}).to(device);
    pass.context = torch::tensor(context_of_row, torch::kInt64).to(device);
    pass.predicting = torch::tensor(predicting, torch::kInt64).to(device);
    // The right padding is masked too: real tokens never see it (it comes after them), but it must not take
    // positions past the model's last (learned position embeddings end there).
    if (in.context_mask.defined() || rows[end - 1].fed < length) {
      std::vector<int64_t> real(size_t(count * length), 0);
      for (int64_t i = 0; i < count; ++i) std::fill_n(real.begin() + i * length, rows[begin + size_t(i)].fed, 1);
      const torch::Tensor context_mask = in.context_mask.defined() ? in.context_mask.index_select(0, pass.context)
                                                                   : torch::ones({count, in.context_ids.size(1)}, torch::dtype(torch::kInt64).device(device));
      pass.mask = torch::cat({context_mask, torch::tensor(real, torch::kInt64).view({count, length}).to(device)}, 1);
    }
    in.passes.push_back(std::move(pass));
    begin = end;
  }
  std::vector<int64_t> rest_order;
  order = 0;
  for (size_t c = 0; c < batch.requests.size(); ++c)
    for (size_t r : batch.requests[c]) {
      for (int64_t j = 0; j + 1 < int64_t(requests[r].continuation.size()); ++j) rest_order.push_back(first_output[size_t(order)] + j);
      ++order;
    }
  in.targets = torch::tensor(targets, torch::kInt64);
  in.rest_order = torch::tensor(rest_order, torch::kInt64);
  return in;
}

// What a baseline pass keeps so that an intervention can start at its first block.
struct Activations {
  KVCache context_cache;
  std::vector<KVCache> continuation_caches;                    // per continuation pass
  std::vector<torch::Tensor> context_outputs;
  std::vector<std::vector<torch::Tensor>> continuation_outputs;  // per continuation pass
};

KVCache select_rows(const KVCache& cache, const torch::Tensor& rows) {
  KVCache out;
  out.length = cache.length;
  out.keys.resize(cache.keys.size());
  out.values.resize(cache.values.size());
  for (size_t l = 0; l < cache.keys.size(); ++l)
    if (cache.keys[l].defined()) {
      const auto here = rows.to(cache.keys[l].device());  // a split model's layers live on several devices
      out.keys[l] = cache.keys[l].index_select(0, here), out.values[l] = cache.values[l].index_select(0, here);
    }
  return out;
}

// Per predicted token (on the CPU): the log-probability of its target (float32, as the harness sums them), whether
// the target is the argmax of the log-probabilities (the harness takes argmax of the log_softmax, not of the
// logits: the same here, so ties round alike), and the top-two gap.
struct TokenScores {
  torch::Tensor log_p, greedy, gap;  // [N] float32, bool, float64
};

TokenScores cat(const std::vector<TokenScores>& parts) {
  if (parts.empty()) return {torch::zeros({0}, torch::kFloat32), torch::zeros({0}, torch::kBool), torch::zeros({0}, torch::kFloat64)};
  std::vector<torch::Tensor> log_p, greedy, gap;
  for (const auto& part : parts) log_p.push_back(part.log_p), greedy.push_back(part.greedy), gap.push_back(part.gap);
  return {torch::cat(log_p), torch::cat(greedy), torch::cat(gap)};
}

// hidden [N, d]: the residual stream after the last layer at N predicting positions; targets [N] (CPU). The output
// head runs on up to 128 MB of logits at a time (one call of the head reads its whole weight: calls of a few rows
// each would spend their time on that); their float32 log-probabilities are made 16 MB at a time (small enough for
// the allocator to reuse), never a copy of the whole [N, V].
TokenScores score_tokens(CausalLM& model, const torch::Tensor& hidden, const torch::Tensor& targets) {
  const int64_t N = hidden.size(0), V = model.vocab_size();
  const int64_t head_rows = std::max<int64_t>(1, (int64_t(1) << 27) / (V * int64_t(c10::elementSize(model.dtype()))));
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / V);
  std::vector<TokenScores> parts;
  for (int64_t head_first = 0; head_first < N; head_first += head_rows) {
    const torch::Tensor logits = model.logits_from_residual(hidden.narrow(0, head_first, std::min(head_rows, N - head_first)));
    for (int64_t first = 0; first < logits.size(0); first += chunk) {
      const int64_t n = std::min(chunk, logits.size(0) - first);
      const torch::Tensor target = targets.narrow(0, head_first + first, n).to(logits.device());
      const torch::Tensor log_p = torch::log_softmax(logits.narrow(0, first, n).to(torch::kFloat32), -1);
      torch::Tensor gap;
      const torch::Tensor best = greedy_choice(log_p, {}, &gap);
      parts.push_back({log_p.gather(1, target.unsqueeze(1)).squeeze(1).to(torch::kCPU), (best == target).to(torch::kCPU),
                       gap.to(torch::kCPU, torch::kFloat64)});
    }
  }
  return cat(parts);
}

// Scores of a batch's tokens: each request's first token (predicted by its context's last position), then the
// others, request by request.
struct BatchScores {
  TokenScores first, rest;
};

// The batch under the model's current modes. The passes keep only the residual stream at their predicting
// positions; the output head then runs on all of them together (score_tokens). With `base` and first_block > 0, the
// layers below first_block are the baseline's (kept in `base`); with `keep`, this (baseline) pass keeps its
// activations there.
BatchScores run_batch(CausalLM& model, const BatchInputs& in, int first_block, const Activations* base, Activations* keep) {
  BatchScores scores;
  KVCache cache;
  ForwardRequest context(in.context_ids, in.context_mask);
  context.cache = &cache, context.logits_last = 0;
  if (keep) context.layer_outputs = &keep->context_outputs;
  if (base && first_block > 0) {
    cache.keys.assign(base->context_cache.keys.begin(), base->context_cache.keys.begin() + first_block);
    cache.values.assign(base->context_cache.values.begin(), base->context_cache.values.begin() + first_block);
    context.start_layer = first_block, context.start_hidden = base->context_outputs[size_t(first_block - 1)];
  }
  std::vector<torch::Tensor> hidden;  // at the predicted tokens, in BatchInputs' order
  {
    // Only a context's last position predicts a continuation token.
    const torch::Tensor h = model.forward(context);
    hidden.push_back(h.select(1, h.size(1) - 1).index_select(0, in.first_context.to(h.device())));
  }
  for (size_t p = 0; p < in.passes.size(); ++p) {
    const ContinuationPass& pass = in.passes[p];
    KVCache expanded = select_rows(cache, pass.context);
    ForwardRequest continuation(pass.ids, pass.mask);
    continuation.cache = &expanded, continuation.logits_last = 0;
    if (base && first_block > 0) {
      for (int l = 0; l < first_block; ++l)
        expanded.keys[size_t(l)] = base->continuation_caches[p].keys[size_t(l)],
        expanded.values[size_t(l)] = base->continuation_caches[p].values[size_t(l)];
      continuation.start_layer = first_block, continuation.start_hidden = base->continuation_outputs[p][size_t(first_block - 1)];
    }
    if (keep) continuation.layer_outputs = &keep->continuation_outputs.emplace_back();
    const torch::Tensor h = model.forward(continuation);
    hidden.push_back(h.reshape({-1, h.size(-1)}).index_select(0, pass.predicting.to(h.device())));
    if (keep) keep->continuation_caches.push_back(std::move(expanded));
  }
  const TokenScores all = score_tokens(model, torch::cat(hidden), in.targets);
  const int64_t requests = in.first_context.size(0);
  scores.first = {all.log_p.narrow(0, 0, requests), all.greedy.narrow(0, 0, requests), all.gap.narrow(0, 0, requests)};
  scores.rest = {all.log_p.index_select(0, in.rest_order), all.greedy.index_select(0, in.rest_order), all.gap.index_select(0, in.rest_order)};
  if (keep) keep->context_cache = std::move(cache);
  return scores;
}

// Adds up each request's token scores into `results` (indexed by the request list).
void score_batch(const PlannedBatch& batch, const std::vector<TokenRequest>& requests, const BatchScores& scores,
                 std::vector<LoglikelihoodResult>& results) {
  auto first_log_p = scores.first.log_p.accessor<float, 1>(), rest_log_p = scores.rest.log_p.accessor<float, 1>();
  auto first_greedy = scores.first.greedy.accessor<bool, 1>(), rest_greedy = scores.rest.greedy.accessor<bool, 1>();
  auto first_gap = scores.first.gap.accessor<double, 1>(), rest_gap = scores.rest.gap.accessor<double, 1>();
  int64_t k = 0, at = 0;
  for (size_t c = 0; c < batch.requests.size(); ++c)
    for (size_t r : batch.requests[c]) {
      const int64_t m = int64_t(requests[r].continuation.size());
      std::vector<float> token_log_p{first_log_p[k]};
      LoglikelihoodResult result{0, first_greedy[k], first_gap[k]};
      for (int64_t j = 1; j < m; ++j, ++at) {
        token_log_p.push_back(rest_log_p[at]);
        result.is_greedy = result.is_greedy && rest_greedy[at];
        result.min_top2_gap = std::min(result.min_top2_gap, rest_gap[at]);
      }
      // A float32 torch sum, as the harness's float(logits.sum()): the same rounding of long sums.
      result.loglikelihood = double(torch::tensor(token_log_p, torch::kFloat32).sum().item<float>());
      results[r] = result;
      ++k;
    }
}

}  // namespace

std::vector<std::vector<LoglikelihoodResult>> score_requests(CausalLM& model, const std::vector<TokenRequest>& requests,
                                                             const std::vector<Intervention>& interventions,
                                                             const LoglikelihoodOptions& options) {
  torch::InferenceMode inference;
  for (const auto& request : requests)
    if (request.context.empty() || request.continuation.empty()) throw Error("a loglikelihood request has an empty context or continuation");
  std::vector<std::vector<LoglikelihoodResult>> results(interventions.size(), std::vector<LoglikelihoodResult>(requests.size()));
  const bool reuse = options.reuse_lower_layers && interventions.size() > 1;
  int64_t scored = 0;
  for (const PlannedBatch& batch : plan_batches(requests, options)) {
    if (options.progress) options.progress(scored, int64_t(requests.size()), "requests");
    if (options.stop && options.stop()) throw UnitCancelled();
    for (const auto& group : batch.requests) scored += int64_t(group.size());
    const BatchInputs in = batch_inputs(batch, requests, model.device());
    // Below an intervention's first block every layer computes what the baseline computes: one baseline pass
    // keeps those activations and each intervention runs only from its first block on.
    Activations base;
    if (reuse) {
      model.clear_interventions();
      const BatchScores base_scores = run_batch(model, in, 0, nullptr, &base);
      for (size_t k = 0; k < interventions.size(); ++k)
        if (interventions[k].first_block() < 0) score_batch(batch, requests, base_scores, results[k]);
    }
    for (size_t k = 0; k < interventions.size(); ++k) {
      const int first_block = interventions[k].first_block();
      if (reuse && first_block < 0) continue;  // scored above
      apply_intervention(model, interventions[k]);
      score_batch(batch, requests, run_batch(model, in, first_block, reuse ? &base : nullptr, nullptr), results[k]);
    }
  }
  model.clear_interventions();
  if (options.progress) options.progress(scored, int64_t(requests.size()), "requests");
  return results;
}

}  // namespace memsweep
