#pragma once
// The loglikelihood engine of the benchmark tasks: sums of log p(continuation tokens | context) and whether each
// continuation token is the argmax, as lm-evaluation-harness's HF backend computes them (_encode_pair,
// left truncation to the model's length, log_softmax then argmax), for many requests under many interventions.
//
// Requests whose (truncated) contexts are identical share one forward pass of the context: the context runs once,
// its keys and values are copied to each continuation, and the continuations (minus their last token, whose
// prediction nobody reads) run on top. A one-token continuation needs only the context's last logits. Batches
// take the longest requests first, at most batch_size contexts and at most token_budget padded positions each;
// how requests are grouped never changes which tokens condition which (only float rounding, ~1e-6).
#include <cstdint>
#include <string>
#include <vector>

#include "worker/base/intervention.h"
#include "worker/model/model.h"
#include "worker/tasks/benchmarks/requests.h"

namespace memsweep {

struct LoglikelihoodResult {
  double loglikelihood = 0;
  bool is_greedy = false;
  // The smallest top-1 minus top-2 log-probability over the continuation's positions: where it is ~0, another
  // implementation's rounding may flip is_greedy.
  double min_top2_gap = 0;
};

// Result [intervention][request]. Each intervention's modes are applied in turn and cleared at the end.
std::vector<std::vector<LoglikelihoodResult>> score_requests(CausalLM& model, const std::vector<TokenRequest>& requests,
                                                             const std::vector<Intervention>& interventions,
                                                             const LoglikelihoodOptions& options);

}  // namespace memsweep
