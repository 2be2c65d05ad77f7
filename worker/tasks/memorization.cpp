// The memorization measurement (../shared/reference/method.md, "Memorization evaluation"). Each row is
// prefix ‖ suffix; the model greedily continues the prefix for |suffix| tokens (EOS masked by default, as the
// paper's min_new_tokens did) and we record, per row:
//   exact_match        the greedy continuation equals the suffix;
//   token_accuracy     fraction of suffix positions where continuation and suffix agree, position by position;
//   completion_entropy sum over suffix positions of the entropy of the teacher-forced next-token distribution
//                      (logits at t predict t + 1; the same EOS mask applied, so the distribution is the one
//                      greedy decoding chooses from);
//   match_length       how many leading suffix tokens the continuation reproduces;
// and the top-two logit gap of every decision those depend on.
// Shortcut, exact in exact arithmetic: greedy decoding reproduces the suffix up to the first position where the
// teacher-forced argmax differs from the true token, so one teacher-forced pass gives EM, the matching length
// and CE; generation runs only from the first mismatch on, continuing from that pass's KV cache cut to the
// matched prefix. In a sweep, the generations of a batch's interventions run as one batch, each row under its own
// intervention's attention modes (per-row modes: same results, one decode loop instead of one per intervention).
#include <algorithm>
#include <cmath>

#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/model/generate.h"

#include "worker/tasks/kinds.h"

namespace memsweep {

namespace {

// A batch of rows cut into the teacher-forced input (prefix ‖ suffix minus its last token, whose prediction
// nobody reads) and the suffix to reproduce.
struct MemorizationBatch {
  int64_t start = 0, count = 0;
  std::vector<std::vector<int64_t>> inputs, suffixes;
  PaddedBatch padded;
  torch::Tensor mask;  // undefined when no row is padded
  int64_t longest_suffix = 0;  // the logits a pass needs: its last longest_suffix positions
};

MemorizationBatch cut_batch(const std::vector<std::vector<int64_t>>& rows, int64_t start, int64_t count,
                            const MemorizationOptions& options) {
  MemorizationBatch batch;
  batch.start = start;
  batch.count = count;
  for (int64_t i = 0; i < count; ++i) {
    const auto& row = rows[size_t(start + i)];
    const int64_t S = options.suffix > 0 ? options.suffix : int64_t(row.size()) - options.prefix;
    batch.suffixes.emplace_back(row.begin() + options.prefix, row.begin() + options.prefix + S);
    batch.longest_suffix = std::max(batch.longest_suffix, S);
    batch.inputs.emplace_back(row.begin(), row.begin() + options.prefix + S - 1);
  }
  batch.padded = left_pad(batch.inputs, 0, size_t(count));
  if (batch.padded.padded) batch.mask = batch.padded.mask;
  return batch;
}

// A batch's teacher-forced scores under one intervention, and the generation its rows still need.
struct TeacherForced {
  torch::Tensor choice, gap, entropy;  // [count, longest suffix] on the CPU: int64, float32, float64
  std::vector<int64_t> first_mismatch;
  // Rows whose continuation leaves the suffix before its last token continue greedily from their first mismatch,
  // on the pass's cache cut to the matched prefix (kept, kept_mask); generate() fills more_tokens and more_gaps.
  std::vector<int64_t> generate_rows, firsts;
  KVCache kept;
  torch::Tensor kept_mask;
  int steps = 0;
  std::vector<std::vector<int64_t>> more_tokens;
  std::vector<std::vector<float>> more_gaps;
};

// From a pass's teacher-forced logits and cache under the model's current attention modes.
TeacherForced teacher_forced(CausalLM& model, const MemorizationBatch& batch_rows, const torch::Tensor& logits, const KVCache& cache,
                             const MemorizationOptions& options) {
  torch::InferenceMode inference;
  const std::vector<int64_t> banned = options.mask_eos ? model.eos_token_ids() : std::vector<int64_t>{};
  const int64_t P = options.prefix, count = batch_rows.count;
  const auto& suffixes = batch_rows.suffixes;

  // Teacher-forced predictions of each suffix position. `logits` holds the last `longest` positions of the
  // left-padded input (forward(..., logits_last = longest suffix)); row i's input ends with its suffix minus the
  // last token, so its suffix position j is predicted at longest - S_i + j there.
  int64_t longest = 0;
  bool uniform = true;
  for (const auto& s : suffixes) longest = std::max<int64_t>(longest, int64_t(s.size()));
  for (const auto& s : suffixes) uniform = uniform && int64_t(s.size()) == longest;
  if (logits.size(1) != longest) throw Error("memorization: logits of " + std::to_string(logits.size(1)) + " positions for suffixes of " + std::to_string(longest));
  torch::Tensor predicted;
  if (uniform) {
    predicted = logits.to(torch::kFloat32);  // a copy in other dtypes; float32 logits are this batch's alone
  } else {
    std::vector<int64_t> positions(static_cast<size_t>(count * longest));
    for (int64_t i = 0; i < count; ++i) {
      const int64_t S = int64_t(suffixes[size_t(i)].size());
      for (int64_t j = 0; j < longest; ++j) positions[size_t(i * longest + j)] = longest - S + std::min<int64_t>(j, S - 1);
    }
    auto index = torch::tensor(positions, torch::kInt64).view({count, longest, 1}).to(logits.device());
    predicted = logits.gather(1, index.expand({count, longest, logits.size(2)})).to(torch::kFloat32);
  }
  if (!banned.empty()) {
    for (int64_t id : banned)
      if (id >= 0 && id < predicted.size(2)) predicted.select(2, id).fill_(-std::numeric_limits<float>::infinity());
  }
  // Argmax, top-two gap and entropy a few rows at a time: the full-vocabulary temporaries of a whole batch
  // (log-probabilities, probabilities, their product) would be several times the logits themselves, and chunks of
  // 16 MB are reused by the allocator instead of being mapped afresh each time.
  std::vector<torch::Tensor> choices, gaps, entropies;
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, longest * predicted.size(2)));
  for (int64_t first = 0; first < count; first += chunk) {
    const torch::Tensor part = predicted.narrow(0, first, std::min(chunk, count - first));
    torch::Tensor part_gap;
    choices.push_back(greedy_choice(part, {}, &part_gap).to(torch::kCPU));
    gaps.push_back(part_gap.to(torch::kCPU));
    torch::Tensor log_p = torch::log_softmax(part, -1);
    torch::Tensor p = log_p.exp();
    p.mul_(log_p.nan_to_num_(0.0, 0.0, 0.0));  // 0 * log 0 is 0: masked ids contribute nothing
    entropies.push_back((-p.sum(-1)).to(torch::kCPU, torch::kFloat64));
  }
  TeacherForced scored;
  scored.choice = torch::cat(choices), scored.gap = torch::cat(gaps), scored.entropy = torch::cat(entropies);
  auto chosen = scored.choice.accessor<int64_t, 2>();

  std::vector<int64_t> keep;
  scored.first_mismatch.resize(size_t(count));
  for (int64_t i = 0; i < count; ++i) {
    const auto& suffix = suffixes[size_t(i)];
    int64_t m = 0;
    while (m < int64_t(suffix.size()) && chosen[i][m] == suffix[size_t(m)]) ++m;
    scored.first_mismatch[size_t(i)] = m;
    if (m + 1 < int64_t(suffix.size())) {
      scored.generate_rows.push_back(i), keep.push_back(P + m), scored.firsts.push_back(chosen[i][m]);
      scored.steps = std::max<int>(scored.steps, int(suffix.size() - m - 1));
    }
  }
  if (!scored.generate_rows.empty()) scored.kept = keep_prefixes(cache, batch_rows.mask, scored.generate_rows, keep, &scored.kept_mask);
  return scored;
}

// One intervention's attention mode per layer.
std::vector<AttentionMode> layer_modes(const Intervention& intervention, int layers) {
  std::vector<AttentionMode> modes(size_t(layers), AttentionMode::normal);
  for (int b : intervention.short_circuit) modes.at(size_t(b)) = AttentionMode::short_circuit;
  for (int b : intervention.zero_attention) modes.at(size_t(b)) = AttentionMode::zero_attention;
  return modes;
}

// Runs the generations that teacher-forced passes left (`parts`, each under its intervention) as one batch: every
// row under its own intervention's modes (CausalLM::set_row_attention_modes), the kept caches left-padded to one
// length (a padded row computes what it computes alone). One decode loop instead of one per intervention: fewer,
// larger matrix products (on CPUs the weights are packed once per step instead of once per intervention and step;
// on GPUs, fewer kernel launches). A single part runs under the model's current modes, or `interventions[0]`'s.
void generate(CausalLM& model, const std::vector<TeacherForced*>& parts, const std::vector<const Intervention*>& interventions,
              const std::vector<int64_t>& banned) {
  torch::InferenceMode inference;
  if (parts.size() == 1) {
    TeacherForced& part = *parts[0];
    if (interventions[0]) apply_intervention(model, *interventions[0]);
    continue_greedy(model, part.kept, part.kept_mask, torch::tensor(part.firsts, torch::kInt64), part.steps, banned, part.more_tokens, part.more_gaps);
    return;
  }
  // Left-pad each part's cache and mask to the longest. A layer whose rows all share a mode other than normal runs
  // under that block mode and stores nothing; elsewhere every row needs keys and values, and a part whose
  // intervention short-circuits or zeroes the layer (it stored none) gets zeros there, which its rows never read.
  const int layers = model.num_layers();
  int64_t length = 0;
  int steps = 0;
  std::vector<std::vector<AttentionMode>> row_modes;
  std::vector<int64_t> firsts;
  torch::Tensor like;  // any part's keys: their heads and head size
  for (size_t k = 0; k < parts.size(); ++k) {
    length = std::max(length, parts[k]->kept.length);
    steps = std::max(steps, parts[k]->steps);
    firsts.insert(firsts.end(), parts[k]->firsts.begin(), parts[k]->firsts.end());
    row_modes.insert(row_modes.end(), parts[k]->generate_rows.size(), layer_modes(*interventions[k], layers));
    for (const torch::Tensor& keys : parts[k]->kept.keys)
      if (keys.defined()) like = keys;
  }
  if (!like.defined()) {  // every part skips every layer's attention: nothing to merge the caches by
    for (size_t k = 0; k < parts.size(); ++k) generate(model, {parts[k]}, {interventions[k]}, banned);
    return;
  }
  KVCache merged;
  merged.length = length;
  merged.keys.resize(size_t(layers)), merged.values.resize(size_t(layers));
  for (int layer = 0; layer < layers; ++layer) {
    bool uniform = true;
    for (const auto& modes : row_modes) uniform = uniform && modes[size_t(layer)] == row_modes[0][size_t(layer)];
    if (uniform && row_modes[0][size_t(layer)] != AttentionMode::normal) continue;
    std::vector<torch::Tensor> keys, values;
    for (TeacherForced* part : parts) {
      auto& kept = part->kept;
      if (kept.keys.size() <= size_t(layer) || !kept.keys[size_t(layer)].defined()) {
        const torch::Device device = model.layer_devices()[size_t(layer)];
        keys.push_back(torch::zeros({int64_t(part->generate_rows.size()), like.size(1), length, like.size(3)}, like.options().device(device)));
        values.push_back(keys.back());
        continue;
      }
      keys.push_back(torch::constant_pad_nd(kept.keys[size_t(layer)], {0, 0, length - kept.length, 0}));
      values.push_back(torch::constant_pad_nd(kept.values[size_t(layer)], {0, 0, length - kept.length, 0}));
      kept.keys[size_t(layer)] = kept.values[size_t(layer)] = torch::Tensor();  // merged layer by layer: never held twice
    }
    merged.keys[size_t(layer)] = torch::cat(keys), merged.values[size_t(layer)] = torch::cat(values);
  }
  std::vector<torch::Tensor> masks;
  for (TeacherForced* part : parts) {
    masks.push_back(torch::constant_pad_nd(part->kept_mask, {length - part->kept.length, 0}));
    part->kept = KVCache(), part->kept_mask = torch::Tensor();
  }
  std::vector<std::vector<int64_t>> tokens;
  std::vector<std::vector<float>> gaps;
  model.set_row_attention_modes(row_modes);
  continue_greedy(model, merged, torch::cat(masks), torch::tensor(firsts, torch::kInt64), steps, banned, tokens, gaps);
  model.clear_interventions();
  size_t row = 0;
  for (TeacherForced* part : parts)
    for (size_t i = 0; i < part->generate_rows.size(); ++i, ++row) {
      part->more_tokens.push_back(std::move(tokens[row]));
      part->more_gaps.push_back(std::move(gaps[row]));
    }
}

// The batch's records under one intervention, once its generation has run.
void record_batch(const MemorizationBatch& batch_rows, const TeacherForced& scored, const std::vector<int64_t>& source, ShardResult& result) {
  auto chosen = scored.choice.accessor<int64_t, 2>();
  auto gap_at = scored.gap.accessor<float, 2>();
  auto entropy_at = scored.entropy.accessor<double, 2>();
  size_t generated_index = 0;
  for (int64_t i = 0; i < batch_rows.count; ++i) {
    const auto& suffix = batch_rows.suffixes[size_t(i)];
    const int64_t S = int64_t(suffix.size()), m = scored.first_mismatch[size_t(i)];
    std::vector<int64_t> continuation(suffix.begin(), suffix.begin() + m);
    std::vector<float> gaps;
    for (int64_t j = 0; j <= std::min(m, S - 1); ++j) gaps.push_back(gap_at[i][j]);
    if (m < S) continuation.push_back(chosen[i][m]);
    if (m + 1 < S) {
      const auto& tokens = scored.more_tokens[generated_index];
      const auto& step_gaps = scored.more_gaps[generated_index];
      ++generated_index;
      continuation.insert(continuation.end(), tokens.begin(), tokens.begin() + (S - m - 1));
      gaps.insert(gaps.end(), step_gaps.begin(), step_gaps.begin() + (S - m - 1));
    }
    int64_t agree = 0;
    for (int64_t j = 0; j < S; ++j) agree += continuation[size_t(j)] == suffix[size_t(j)];
    double completion_entropy = 0;
    for (int64_t j = 0; j < S; ++j) completion_entropy += entropy_at[i][j];

    ExampleRecord record;
    record.index = batch_rows.start + i;
    record.values = {{"exact_match", m == S ? 1.0 : 0.0},
                     {"token_accuracy", double(agree) / double(S)},
                     {"completion_entropy", completion_entropy},
                     {"match_length", double(m)}};
    // The decisions behind them: where greedy decoding first left the suffix (position match_length), what it
    // generated there and how close that call was, and the closest call over the whole suffix.
    if (!gaps.empty()) record.facts["min_top2_gap"] = double(*std::min_element(gaps.begin(), gaps.end()));
    if (m < S) record.facts["mismatch_token"] = double(continuation[size_t(m)]), record.facts["mismatch_gap"] = double(gaps[size_t(m)]);
    record.detail = {{"source", source[size_t(batch_rows.start + i)]}, {"continuation", continuation}, {"top2_gap", gaps}};
    for (const auto& [key, value] : record.values) result.totals[key] += value;
    result.totals["examples"] += 1;
    result.examples.push_back(std::move(record));
  }
}

}  // namespace

void evaluate_memorization(CausalLM& model, const std::vector<std::vector<int64_t>>& rows, const std::vector<int64_t>& source,
                           int64_t start, int64_t count, const MemorizationOptions& options, ShardResult& result) {
  torch::InferenceMode inference;
  MemorizationBatch batch = cut_batch(rows, start, count, options);
  KVCache cache;
  ForwardRequest request(batch.padded.ids, batch.mask);
  request.cache = &cache, request.logits_last = batch.longest_suffix;
  torch::Tensor logits = model.forward(request);
  TeacherForced scored = teacher_forced(model, batch, logits, cache, options);
  logits = torch::Tensor();
  if (!scored.generate_rows.empty())
    generate(model, {&scored}, {nullptr}, options.mask_eos ? model.eos_token_ids() : std::vector<int64_t>{});
  record_batch(batch, scored, source, result);
}

namespace {

class MemorizationTask : public Task {
 public:
  MemorizationTask(const DatasetSpec& spec, const TaskContext& context) : spec_(spec) {
    MemorizationRows set = read_memorization_rows(spec, context);
    options_ = set.options, rows_ = std::move(set.rows), source_ = std::move(set.source);
    if (set.skipped > 0)
      log_warning(dataset_on_model(spec, context) + ": skip_bad skipped " + std::to_string(set.skipped) + " bad rows; " +
                  std::to_string(rows_.size()) + " remain");
  }

  std::string kind() const override { return "memorization"; }
  int64_t num_examples() const override { return int64_t(rows_.size()); }

  std::vector<ShardResult> run(CausalLM& model, int64_t first, int64_t count, const std::vector<Intervention>& interventions,
                               const RunOptions& options) override {
    if (first < 0 || count < 0 || first + count > num_examples())
      throw Error("dataset '" + spec_.name + "': shard [" + std::to_string(first) + ", " + std::to_string(first + count) +
                  ") is outside its " + std::to_string(num_examples()) + " rows");
    torch::InferenceMode inference;
    std::vector<ShardResult> results = named_results(interventions);
    int64_t longest = 0;
    for (int64_t i = first; i < first + count; ++i) longest = std::max<int64_t>(longest, int64_t(rows_[size_t(i)].size()));
    const int64_t rows_per_batch = options.rows_per_batch(longest);
    for (int64_t start = first; start < first + count; start += rows_per_batch) {
      options.between_batches(start - first, count, "rows");
      MemorizationBatch batch = cut_batch(rows_, start, std::min<int64_t>(rows_per_batch, first + count - start), options_);
      const bool reuse = options.reuse_lower_layers && interventions.size() > 1;
      // Generations left by the teacher-forced passes wait here and run together (generate()): up to
      // kGenerationBatches batches' rows at once, so that their kept caches stay a few batches' worth.
      std::vector<TeacherForced> scored(interventions.size());
      std::vector<size_t> waiting;
      int64_t waiting_rows = 0;
      const std::vector<int64_t> banned = options_.mask_eos ? model.eos_token_ids() : std::vector<int64_t>{};
      auto run_waiting = [&] {
        if (waiting.empty()) return;
        std::vector<TeacherForced*> parts;
        std::vector<const Intervention*> of;
        for (size_t k : waiting) parts.push_back(&scored[k]), of.push_back(&interventions[k]);
        generate(model, parts, of, banned);
        for (size_t k : waiting) record_batch(batch, scored[k], source_, results[k]), scored[k] = TeacherForced();
        waiting.clear();
        waiting_rows = 0;
      };
      auto done = [&](size_t k, TeacherForced teacher) {
        scored[k] = std::move(teacher);
        const int64_t rows = int64_t(scored[k].generate_rows.size());
        if (rows == 0) {
          record_batch(batch, scored[k], source_, results[k]);
          scored[k] = TeacherForced();
          return;
        }
        if (waiting_rows + rows > kGenerationBatches * rows_per_batch) run_waiting();
        waiting.push_back(k);
        waiting_rows += rows;
      };
      // Below an intervention's first block every layer computes what the baseline computes: one baseline pass
      // per batch keeps each layer's output and its keys and values, and each intervention runs only the layers
      // from its first block on.
      KVCache base_cache;
      std::vector<torch::Tensor> base_outputs;
      if (reuse) {
        model.clear_interventions();
        ForwardRequest request(batch.padded.ids, batch.mask);
        request.cache = &base_cache, request.layer_outputs = &base_outputs, request.logits_last = batch.longest_suffix;
        torch::Tensor base_logits = model.forward(request);
        // The baseline is scored at once, so its logits are not held while the interventions run.
        for (size_t k = 0; k < interventions.size(); ++k)
          if (interventions[k].first_block() < 0) done(k, teacher_forced(model, batch, base_logits, base_cache, options_));
      }
      for (size_t k = 0; k < interventions.size(); ++k) {
        const int first_block = interventions[k].first_block();
        if (reuse && first_block < 0) continue;  // scored above
        apply_intervention(model, interventions[k]);
        KVCache cache;
        ForwardRequest request(batch.padded.ids, batch.mask);
        request.cache = &cache, request.logits_last = batch.longest_suffix;
        if (reuse && first_block > 0) {
          // The baseline's keys and values below the first block (no copy: tensors are shared).
          cache.keys.assign(base_cache.keys.begin(), base_cache.keys.begin() + first_block);
          cache.values.assign(base_cache.values.begin(), base_cache.values.begin() + first_block);
          request.start_layer = first_block, request.start_hidden = base_outputs[size_t(first_block - 1)];
        }
        torch::Tensor logits = model.forward(request);
        TeacherForced teacher = teacher_forced(model, batch, logits, cache, options_);
        // Freed before done() may run the waiting generations: the kept prefixes are copies.
        logits = torch::Tensor(), cache = KVCache();
        done(k, std::move(teacher));
      }
      run_waiting();
    }
    model.clear_interventions();
    options.between_batches(count, count, "rows");
    return results;
  }

 private:
  DatasetSpec spec_;
  MemorizationOptions options_;
  std::vector<std::vector<int64_t>> rows_;
  std::vector<int64_t> source_;
};

}  // namespace

std::unique_ptr<Task> open_memorization_task(const DatasetSpec& spec, const TaskContext& context) {
  return std::make_unique<MemorizationTask>(spec, context);
}

}  // namespace memsweep
