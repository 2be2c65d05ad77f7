// Divergence diagnostics: how far an intervention moves the model, layer by layer — the measurable side of the
// paper's claim that a change early in the network is amplified by later blocks while a late one stays local
// (../shared/reference/method.md). For an intervention whose first intervened block is b, and every layer
// l >= b, over the real (non-pad) token positions of the dataset:
//   relative_change.L  mean of ||h_l - h'_l||_2 / ||h_l||_2, h_l the residual stream after layer l (before the
//                      final layer norm) of the baseline, h'_l under the intervention;
//   kl.L               mean of KL(p_l || p'_l), p_l = softmax(head(final_norm(h_l))) — at the last layer the model's
//                      next-token distribution, at earlier layers its logit lens.
// Layers below b compute exactly what the baseline computes and are not recorded. L is zero-padded to 2 digits.
#include <algorithm>
#include <cstdio>

#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/tasks/kinds.h"
#include "worker/tasks/token_rows.h"

namespace memsweep {

namespace {

class DivergenceTask : public Task {
 public:
  DivergenceTask(const DatasetSpec& spec, const TaskContext& context) : spec_(spec) {
    TokenRows set = read_divergence_rows(spec, context);
    rows_ = std::move(set.rows);
    if (set.skipped > 0)
      log_warning(dataset_on_model(spec, context) + ": skip_bad skipped " + std::to_string(set.skipped) + " bad rows; " +
                  std::to_string(rows_.size()) + " remain");
  }

  std::string kind() const override { return "divergence"; }
  int64_t num_examples() const override { return int64_t(rows_.size()); }

  std::vector<ShardResult> run(CausalLM& model, int64_t first, int64_t count, const std::vector<Intervention>& interventions,
                               const RunOptions& options) override {
    if (first < 0 || count < 0 || first + count > num_examples())
      throw Error("dataset '" + spec_.name + "': shard outside its " + std::to_string(num_examples()) + " rows");
    torch::InferenceMode inference;
    std::vector<ShardResult> results = named_results(interventions);
    int64_t longest = 0;
    for (int64_t i = first; i < first + count; ++i) longest = std::max<int64_t>(longest, int64_t(rows_[size_t(i)].size()));
    const int64_t rows_per_batch = options.rows_per_batch(longest);
    for (int64_t start = first; start < first + count; start += rows_per_batch) {
      options.between_batches(start - first, count, "rows");
      const int64_t size = std::min<int64_t>(rows_per_batch, first + count - start);
      PaddedBatch batch = left_pad(rows_, size_t(start), size_t(size));
      torch::Tensor mask = batch.padded ? batch.mask : torch::Tensor();
      auto real = batch.mask.to(model.device(), torch::kBool);  // [B, T]
      model.clear_interventions();
      std::vector<torch::Tensor> base;
      ForwardRequest request(batch.ids, mask);
      request.layer_outputs = &base, request.logits_last = 0;
      model.forward(request);
      std::vector<torch::Tensor> base_log_p(base.size());
      for (size_t l = 0; l < base.size(); ++l)
        base_log_p[l] = torch::log_softmax(model.logits_from_residual(base[l]).to(torch::kFloat32), -1);
      for (size_t k = 0; k < interventions.size(); ++k) {
        const Intervention& intervention = interventions[k];
        ShardResult& result = results[k];
        std::vector<ExampleRecord> records(static_cast<size_t>(size));
        for (int64_t i = 0; i < size; ++i) {
          records[size_t(i)].index = start + i;
          result.totals["positions"] += double(rows_[size_t(start + i)].size());
        }
        result.totals["examples"] += double(size);
        const int b = intervention.first_block();
        if (b >= 0) {
          apply_intervention(model, intervention);
          std::vector<torch::Tensor> changed;
          request.layer_outputs = &changed;
          model.forward(request);
          for (size_t l = size_t(b); l < changed.size(); ++l) {
            auto h = base[l].to(torch::kFloat32), g = changed[l].to(torch::kFloat32);
            // A model split over devices keeps layer l's outputs on its device and the logits on the head's.
            auto relative = ((h - g).norm(2, -1) / h.norm(2, -1)).masked_fill(real.logical_not().to(h.device()), 0.0);  // [B, T]
            auto log_q = torch::log_softmax(model.logits_from_residual(changed[l]).to(torch::kFloat32), -1);
            auto kl = (base_log_p[l].exp() * (base_log_p[l] - log_q)).sum(-1).masked_fill(real.logical_not().to(log_q.device()), 0.0);
            auto relative_sum = relative.sum(-1).to(torch::kCPU), kl_sum = kl.sum(-1).to(torch::kCPU);
            const std::string relative_key = divergence_metric_name("relative_change", int(l)), kl_key = divergence_metric_name("kl", int(l));
            for (int64_t i = 0; i < size; ++i) {
              const double n = double(rows_[size_t(start + i)].size());
              records[size_t(i)].values[relative_key] = relative_sum[i].item<double>() / n;
              records[size_t(i)].values[kl_key] = kl_sum[i].item<double>() / n;
              result.totals[relative_key] += relative_sum[i].item<double>();
              result.totals[kl_key] += kl_sum[i].item<double>();
            }
          }
        }
        for (auto& record : records) result.examples.push_back(std::move(record));
      }
    }
    model.clear_interventions();
    options.between_batches(count, count, "rows");
    return results;
  }

 private:
  DatasetSpec spec_;
  std::vector<std::vector<int64_t>> rows_;
};

}  // namespace

std::unique_ptr<Task> open_divergence_task(const DatasetSpec& spec, const TaskContext& context) {
  return std::make_unique<DivergenceTask>(spec, context);
}

}  // namespace memsweep
