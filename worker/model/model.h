#pragma once
// What every architecture offers the tasks: a causal LM whose attention can be changed per block in place,
// without reloading. Architectures live in one file each (gpt_neox.cpp, ...) and are chosen by config.json's
// model_type in load_causal_lm().
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "worker/model/model_config.h"

namespace memsweep {

// What a block's attention computes. Adding a kind: a value here, its name below, and one case in each
// architecture's attention forward.
enum class AttentionMode {
  normal,
  short_circuit,   // identity attention: each token attends only to itself, o_t = v_t (no Q/K/softmax work)
  zero_attention,  // the attention sublayer's output (after its output projection and bias) is zero
};
const char* attention_mode_name(AttentionMode mode);

struct LoadOptions {
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  // GPT-NeoX: libtorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on GPUs) instead of
  // materialising the scores, for passes without cached keys; false is the eager formula everywhere. GPT-Neo
  // always runs its fp32 eager attention.
  bool fused_attention = true;
  // Split the layers over this many devices, in order (worker/base/layer_split.h balances them by parameters):
  // cuda:n .. cuda:n+k-1 from `device` = cuda:n, or k placeholders that are all the CPU (the same code path, for
  // tests). For models that do not fit one device; `memsweep plan --device-memory` says how many they need.
  int devices = 1;
};

// Keys and values of the tokens seen so far, per layer, for incremental decoding. Layers whose attention is
// short-circuited or zeroed store nothing (they never look at other tokens). Keep the attention modes fixed
// while a cache is in use.
struct KVCache {
  std::vector<torch::Tensor> keys, values;  // per layer [B, H, T, hd]; undefined where a layer stores none
  int64_t length = 0;                       // tokens seen (padding included)
  // Adds this step's keys and values of `layer` [B, H, Tnew, hd]; returns all keys and values so far.
  std::pair<torch::Tensor, torch::Tensor> append(int layer, const torch::Tensor& k, const torch::Tensor& v);
  // Makes room for `more` tokens after those held: each layer's keys and values move to the front of storage that
  // long, and append() writes there instead of concatenating (a decode loop then copies the cache once, not at
  // every step). keys/values stay views of exactly the tokens held. A copy of the cache shares that storage: append
  // to one of them only.
  void reserve(int64_t more);

 private:
  std::vector<torch::Tensor> key_storage_, value_storage_;  // per layer, from reserve(); undefined: none
};

// Where a forward pass starts (see CausalLM::forward): the embeddings, or layer `layer` entered by `hidden`.
struct ForwardStart {
  int layer = 0;
  torch::Tensor hidden;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual std::string architecture() const = 0;  // config.json's model_type
  virtual int num_layers() const = 0;
  virtual int64_t vocab_size() const = 0;  // rows of the output head (may exceed the tokenizer's ids)
  virtual std::vector<int64_t> eos_token_ids() const = 0;
  virtual torch::ScalarType dtype() const = 0;
  virtual torch::Device device() const = 0;  // where inputs go: the first layer's device
  // Every layer's device (all device() unless the model is split); the output head is on the last one, or with
  // the embeddings when tied to them. Logits come back on the head's device.
  virtual const std::vector<torch::Device>& layer_devices() const = 0;

  virtual void set_attention_mode(int layer, AttentionMode mode) = 0;
  virtual AttentionMode attention_mode(int layer) const = 0;
  // Every block back to normal, and no per-row modes.
  void clear_interventions();
  // Sets `mode` on each listed block (others unchanged); Error on a block that does not exist.
  void set_attention_mode(const std::vector<int>& layers, AttentionMode mode);
  // Attention modes per row instead of per block, for the passes that follow until clear_interventions():
  // rows[r][layer] is batch row r's mode at `layer`, and every pass must have rows.size() rows. For decoding the rows
  // of several interventions as one batch: each row computes what it would under its own modes. A layer where all
  // rows agree takes that mode as its block mode; elsewhere it runs the normal attention for every row (its cache
  // holds keys and values for all rows), then a short-circuited row takes its own value instead of the attention's
  // mix and a zeroed row adds nothing. Replaces any block modes; Error when a row lists the wrong number of layers.
  void set_row_attention_modes(const std::vector<std::vector<AttentionMode>>& rows);

  // ids [B, T] (int64) -> logits [B, T, V] in the model's dtype. `mask` [B, P + T] is 1 for real tokens and 0
  // for left padding, or undefined when no row is padded; positions are derived from it (cumsum(mask) - 1), so a
  // padded row computes what it computes alone. Rows of padding positions are garbage. With a cache, ids are
  // the T tokens that follow the P = cache->length tokens it holds, and their keys and values are added to it.
  // With layer_outputs, it receives the output of each layer run (the residual stream after it, before the
  // final layer norm), [B, T, d] each.
  // `start` skips the layers below start.layer: start.hidden is the residual stream entering that layer, from an
  // earlier pass on the same ids and mask whose layers below computed what this model's do (below an
  // intervention's first block, the baseline's); a cache must then already hold those layers' keys and values
  // for these T tokens.
  // `logits_last` > 0 computes the logits of the last logits_last positions only ([B, logits_last, V]; the
  // output head is most of a small model's work and its logits most of the memory), -1 every position, 0 none: the
  // result is then the residual stream after the last layer, [B, T, d] (logits_from_residual makes logits of it,
  // e.g. of several passes' rows in one call of the head). `logits_at`, when defined, instead lists positions of
  // the flattened [B * T] (int64 [N]): the logits of those only, [N, V].
  virtual torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask, KVCache* cache = nullptr,
                                std::vector<torch::Tensor>* layer_outputs = nullptr,
                                const ForwardStart& start = ForwardStart(), int64_t logits_last = -1,
                                const torch::Tensor& logits_at = torch::Tensor()) = 0;
  // Logits from a residual stream [.., d]: final layer norm, then the output head (the "logit lens" at a layer).
  virtual torch::Tensor logits_from_residual(const torch::Tensor& h) = 0;

 protected:
  // The end of forward(): the logits forward() was asked for from h [B, T, d] (logits_last, logits_at).
  torch::Tensor logits_of_last(const torch::Tensor& h, int64_t logits_last, const torch::Tensor& logits_at);

  // set_row_attention_modes' rows, per layer: [B] bool on the layer's device, the rows short-circuited / zeroed there
  // (undefined where no row is, or where the layer's block mode says it for all rows). rows = 0: none set.
  struct RowModes {
    int64_t rows = 0;
    std::vector<torch::Tensor> short_circuit, zeroed;
  };
  RowModes row_modes_;
  // Error unless a pass of `batch` rows fits the row modes set (any batch when none are).
  void check_row_modes(int64_t batch) const;
};

// Rows [first, first + count) of `rows`, left-padded to the longest: ids and mask [count, T] (int64; mask 1 for
// real tokens). `padded` is false when all rows have the same length (then pass no mask to forward()).
struct PaddedBatch {
  torch::Tensor ids, mask;
  bool padded = false;
  int64_t length = 0;
};
PaddedBatch left_pad(const std::vector<std::vector<int64_t>>& rows, size_t first, size_t count);

// Reads MODEL_DIR/config.json and the safetensors checkpoint; every tensor is checked and used.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir, const LoadOptions& options);

// "float32" | "float16" | "bfloat16" -> dtype; Error otherwise.
torch::ScalarType parse_dtype(const std::string& name);
// "cpu" | "cuda" | "cuda:N"; Error when CUDA is asked for and not available.
torch::Device parse_device(const std::string& name);

// The device of each layer for LoadOptions' device and devices (Error: not enough GPUs, more devices than layers).
std::vector<torch::Device> place_layers(const ModelSize& size, torch::Device device, int devices);

}  // namespace memsweep
