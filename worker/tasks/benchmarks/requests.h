#pragma once
// lm-evaluation-harness's loglikelihood requests as token ids, and how the loglikelihood engine (loglikelihood.h)
// groups them into batches. libtorch-free: plan sizes a benchmark's batches with the same plan the engine runs.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace memsweep {

class Tokenizer;

struct TokenRequest {
  std::vector<int64_t> context;       // non-empty
  std::vector<int64_t> continuation;  // non-empty
};

// The token the harness conditions an empty context and the first rolling window on (its prefix_token_id): the
// tokenizer's BOS (Tokenizer::bos_id) when it has one, else its "<|endoftext|>", else the model's first eos_token_id;
// Error when there is none.
int64_t harness_prefix_token(const Tokenizer& tokenizer, const std::vector<int64_t>& model_eos_ids);

// The harness's tok_encode with its default add_special_tokens: the post-processor's special tokens around the text
// (Llama's BOS), but none when the text starts with the prefix token's own text (e.g. "<s>").
std::vector<int64_t> harness_encode(const Tokenizer& tokenizer, const std::string& text, int64_t prefix);

// The harness's request tokenization: trailing whitespace of the context moves to the start of the continuation;
// whole = harness_encode(context + continuation), context = harness_encode(context), continuation =
// whole[len(context):]. An empty context becomes [prefix], the continuation encoded without special tokens (or, when
// it starts with prefix, its first token). Error when the continuation encodes to no token.
TokenRequest encode_request(const Tokenizer& tokenizer, const std::string& context, const std::string& continuation, int64_t prefix);

// What the model sees: (context + continuation)[-(max_length + 1):][:-1], i.e. the context cut from the left so
// that context + continuation is at most max_length + 1 tokens. Error when the continuation alone is longer than
// max_length (the harness asserts the same).
TokenRequest fit_to_length(const TokenRequest& request, int64_t max_length);

// The harness's rolling windows (get_rolling_token_windows + make_disjoint_window, context_len 1) of a text's
// tokens: each token predicted once, every window at most max_length tokens, the first conditioned on `prefix`.
std::vector<TokenRequest> rolling_windows(const std::vector<int64_t>& tokens, int64_t prefix, int64_t max_length);

struct LoglikelihoodOptions {
  int batch_size = 8;           // contexts per forward pass
  int64_t token_budget = 8192;  // padded positions (contexts + continuations) per batch, when batch_size > 1
  bool share_contexts = true;   // one pass per distinct context; false: every request alone (the harness's way)
  bool reuse_lower_layers = true;
  std::function<bool()> stop;   // asked before each batch: true throws UnitCancelled (task.h)
  std::function<void(int64_t done, int64_t total, const char* what)> progress;  // requests scored so far (RunOptions)
};

// Groups of requests sharing a context, in batches (the plan depends only on the requests and the options).
struct PlannedBatch {
  std::vector<std::vector<int64_t>> contexts;          // distinct contexts
  std::vector<std::vector<size_t>> requests;           // per context, indices into the request list
};
std::vector<PlannedBatch> plan_batches(const std::vector<TokenRequest>& requests, const LoglikelihoodOptions& options);

// Where a batch's continuation passes end, for its continuation rows of `fed` tokens each, sorted longest first: the
// cut with the fewest padded positions, each pass counted 16 positions more (its own copy of the contexts' keys and
// values, smaller matrix products). Each pass is right-padded to its first (longest) row.
std::vector<size_t> continuation_pass_ends(const std::vector<int64_t>& fed);

}  // namespace memsweep
