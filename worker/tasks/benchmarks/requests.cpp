#include "worker/tasks/benchmarks/requests.h"

#include <algorithm>
#include <limits>
#include <map>

#include "worker/base/error.h"
#include "worker/tasks/benchmarks/python_text.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {

int64_t harness_prefix_token(const Tokenizer& tokenizer, const std::vector<int64_t>& model_eos_ids) {
  if (auto id = tokenizer.bos_id()) return *id;
  if (auto id = tokenizer.eos_id()) return *id;
  if (!model_eos_ids.empty()) return model_eos_ids.front();
  throw Error("the tokenizer has neither a BOS nor <|endoftext|> and the model no eos_token_id: nothing to condition an empty context on");
}

std::vector<int64_t> harness_encode(const Tokenizer& tokenizer, const std::string& text, int64_t prefix) {
  const std::string prefix_text = tokenizer.decode({int32_t(prefix)});
  const bool starts_with_prefix = !prefix_text.empty() && text.compare(0, prefix_text.size(), prefix_text) == 0;
  const auto ids = starts_with_prefix ? tokenizer.encode(text) : tokenizer.encode_with_special_tokens(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TokenRequest encode_request(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation, int64_t prefix) {
  TokenRequest request;
  if (context.empty()) {
    const auto ids = tokenizer.encode(continuation);
    request.continuation.assign(ids.begin(), ids.end());
    if (!request.continuation.empty() && request.continuation.front() == prefix) {
      request.context = {prefix};
      request.continuation.erase(request.continuation.begin());
    } else {
      request.context = {prefix};
    }
  } else {
    const std::string kept = python_rstrip(context);
    const std::string moved = context.substr(kept.size()) + continuation;
    const std::vector<int64_t> whole = harness_encode(tokenizer, kept + moved, prefix);
    request.context = harness_encode(tokenizer, kept, prefix);
    if (request.context.empty() || whole.size() < request.context.size())
      throw Error("the context encodes to no token or to more tokens than context + continuation");
    request.continuation.assign(whole.begin() + int64_t(request.context.size()), whole.end());
  }
  if (request.continuation.empty()) throw Error("the continuation '" + continuation + "' encodes to no token");
  return request;
}

TokenRequest fit_to_length(const TokenRequest& request, int64_t max_length) {
  const int64_t m = int64_t(request.continuation.size());
  if (m > max_length)
    throw Error("the continuation has " + std::to_string(m) + " tokens, more than the model's length " + std::to_string(max_length));
  const int64_t keep = std::min<int64_t>(int64_t(request.context.size()), max_length + 1 - m);
  return {std::vector<int64_t>(request.context.end() - keep, request.context.end()), request.continuation};
}

std::vector<TokenRequest> rolling_windows(const std::vector<int64_t>& tokens, int64_t prefix, int64_t max_length) {
  std::vector<TokenRequest> windows;
  if (tokens.empty()) return windows;
  const int64_t n = int64_t(tokens.size());
  auto slice = [&](int64_t from, int64_t to) { return std::vector<int64_t>(tokens.begin() + from, tokens.begin() + to); };
  const int64_t first = std::min(max_length, n);
  windows.push_back({{prefix}, slice(0, first)});
  // Later windows predict up to max_length tokens each, conditioned on the token before them (the disjoint
  // context of a window that ends at `end` is tokens[end - max_length - 1, end - predicted)).
  for (int64_t predicted = first; predicted < n;) {
    const int64_t count = std::min(n - predicted, max_length), end = predicted + count;
    windows.push_back({slice(end - max_length - 1, end - count), slice(end - count, end)});
    predicted = end;
  }
  return windows;
}

std::vector<PlannedBatch> plan_batches(const std::vector<TokenRequest>& requests, const LoglikelihoodOptions& options) {
  struct Group {
    const std::vector<int64_t>* context;
    std::vector<size_t> requests;
    int64_t fed_continuation = 0;  // longest continuation minus its last token
  };
  std::vector<Group> groups;
  std::map<std::vector<int64_t>, size_t> by_context;
  for (size_t r = 0; r < requests.size(); ++r) {
    size_t g = groups.size();
    if (options.share_contexts) {
      auto [at, inserted] = by_context.emplace(requests[r].context, groups.size());
      g = at->second;
      if (inserted) groups.push_back({&requests[r].context, {}, 0});
    } else {
      groups.push_back({&requests[r].context, {}, 0});
    }
    groups[g].requests.push_back(r);
    groups[g].fed_continuation = std::max<int64_t>(groups[g].fed_continuation, int64_t(requests[r].continuation.size()) - 1);
  }
  std::vector<size_t> order(groups.size());
  for (size_t g = 0; g < order.size(); ++g) order[g] = g;
  auto length = [&](size_t g) { return int64_t(groups[g].context->size()) + groups[g].fed_continuation; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length(a) > length(b); });

  std::vector<PlannedBatch> batches;
  int64_t longest_context = 0, longest_continuation = 0, continuation_rows = 0;
  for (size_t g : order) {
    const Group& group = groups[g];
    int64_t rows = 0;
    for (size_t r : group.requests) rows += requests[r].continuation.size() > 1;
    const int64_t context_length = std::max<int64_t>(longest_context, int64_t(group.context->size()));
    const int64_t continuation_length = std::max(longest_continuation, group.fed_continuation);
    const bool fits = !batches.empty() && int64_t(batches.back().contexts.size()) < options.batch_size &&
                      int64_t(batches.back().contexts.size() + 1) * context_length + (continuation_rows + rows) * continuation_length <=
                          options.token_budget;
    if (!fits) {
      batches.emplace_back();
      longest_context = longest_continuation = continuation_rows = 0;
    }
    batches.back().contexts.push_back(*group.context);
    batches.back().requests.push_back(group.requests);
    longest_context = std::max<int64_t>(longest_context, int64_t(group.context->size()));
    longest_continuation = std::max(longest_continuation, group.fed_continuation);
    continuation_rows += rows;
  }
  return batches;
}

std::vector<size_t> continuation_pass_ends(const std::vector<int64_t>& fed) {
  constexpr int64_t kPassOverhead = 16;
  const size_t n = fed.size();
  std::vector<int64_t> cost(n + 1, std::numeric_limits<int64_t>::max());
  std::vector<size_t> cut(n + 1, 0);
  cost[0] = 0;
  for (size_t end = 1; end <= n; ++end)  // dynamic programming over the cut points
    for (size_t begin = 0; begin < end; ++begin) {
      const int64_t c = cost[begin] + int64_t(end - begin) * fed[begin] + kPassOverhead;
      if (c < cost[end]) cost[end] = c, cut[end] = begin;
    }
  std::vector<size_t> ends;
  for (size_t end = n; end > 0; end = cut[end]) ends.push_back(end);
  std::reverse(ends.begin(), ends.end());
  return ends;
}

}  // namespace memsweep
