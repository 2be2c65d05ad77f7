#pragma once
// The causal LM every architecture is: one decoder (model.cpp) built from the architecture's spec (spec.h), whose
// attention can be changed per block (attention.h) in place, without reloading. load_causal_lm() reads config.json's
// model_type to choose the spec reader.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "worker/model/attention.h"
#include "worker/model/model_config.h"
#include "worker/model/spec.h"

namespace memsweep {

class WeightLoader;

struct LoadOptions {
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
  // libtorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on GPUs) instead of materialising
  // the scores, for passes without cached keys; false is the eager formula everywhere. Architectures whose scores are
  // float32 whatever the dtype (GPT-Neo) always run the eager formula.
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
  std::vector<torch::Tensor> keys, values;  // per layer [B, K, T, hd] (K key/value heads); undefined where a layer stores none
  int64_t length = 0;                       // tokens seen (padding included)
  // Adds this step's keys and values of `layer` [B, K, Tnew, hd]; returns all keys and values so far.
  std::pair<torch::Tensor, torch::Tensor> append(int layer, const torch::Tensor& k, const torch::Tensor& v);
  // Makes room for `more` tokens after those held: each layer's keys and values move to the front of storage that
  // long, and append() writes there instead of concatenating (a decode loop then copies the cache once, not at
  // every step). keys/values stay views of exactly the tokens held. A copy of the cache shares that storage: append
  // to one of them only.
  void reserve(int64_t more);

 private:
  std::vector<torch::Tensor> key_storage_, value_storage_;  // per layer, from reserve(); undefined: none
};

// One forward pass: ids [B, T] (int64) and what to do with them. Returns logits [B, T, V] in the model's dtype unless
// `logits_last` / `logits_at` say otherwise.
struct ForwardRequest {
  ForwardRequest(torch::Tensor ids_, torch::Tensor mask_ = torch::Tensor()) : ids(std::move(ids_)), mask(std::move(mask_)) {}
  torch::Tensor ids;
  // [B, P + T]: 1 for real tokens and 0 for left padding, or undefined when no row is padded; positions are derived
  // from it (cumsum(mask) - 1), so a padded row computes what it computes alone. Rows of padding positions are garbage.
  torch::Tensor mask;
  // With a cache, ids are the T tokens that follow the P = cache->length tokens it holds, and their keys and values
  // are added to it.
  KVCache* cache = nullptr;
  // Receives the output of each layer run (the residual stream after it, before the final norm), [B, T, d] each.
  std::vector<torch::Tensor>* layer_outputs = nullptr;
  // Skips the layers below start_layer: start_hidden is the residual stream entering that layer, from an earlier pass
  // on the same ids and mask whose layers below computed what this model's do (below an intervention's first block,
  // the baseline's); a cache must then already hold those layers' keys and values for these T tokens.
  int start_layer = 0;
  torch::Tensor start_hidden;
  // > 0: the logits of the last logits_last positions only ([B, logits_last, V]; the output head is most of a small
  // model's work and its logits most of the memory); -1 every position; 0 none: the result is then the residual
  // stream after the last layer, [B, T, d] (logits_from_residual makes logits of it, e.g. of several passes' rows in
  // one call of the head). `logits_at`, when defined, instead lists positions of the flattened [B * T] (int64 [N]):
  // the logits of those only, [N, V].
  int64_t logits_last = -1;
  torch::Tensor logits_at;
};

class CausalLM {
 public:
  // The model of `spec`, its weights taken from `weights` (load_causal_lm checks that every tensor was used).
  CausalLM(DecoderSpec spec, WeightLoader& weights, const LoadOptions& options);
  ~CausalLM();
  CausalLM(const CausalLM&) = delete;
  CausalLM& operator=(const CausalLM&) = delete;

  const DecoderSpec& spec() const { return spec_; }
  std::string architecture() const { return spec_.model_type; }  // config.json's model_type
  int num_layers() const { return int(spec_.num_layers); }
  int64_t vocab_size() const { return spec_.vocab_size; }  // rows of the output head (may exceed the tokenizer's ids)
  std::vector<int64_t> eos_token_ids() const { return spec_.eos_token_ids; }
  torch::ScalarType dtype() const { return dtype_; }
  torch::Device device() const { return layer_devices_.front(); }  // where inputs go: the first layer's device
  // Every layer's device (all device() unless the model is split); the output head is on the last one, or with
  // the embeddings when tied to them. Logits come back on the head's device.
  const std::vector<torch::Device>& layer_devices() const { return layer_devices_; }

  void set_attention_mode(int layer, AttentionMode mode);
  AttentionMode attention_mode(int layer) const;
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

  torch::Tensor forward(const ForwardRequest& request);
  // Logits from a residual stream [.., d]: final norm, then the output head (the "logit lens" at a layer).
  torch::Tensor logits_from_residual(const torch::Tensor& h);

 private:
  struct Block;
  // The inputs every layer's attention shares in this pass (masks, rotary tables), on the first layer's device.
  AttentionInputs attention_inputs(const ForwardRequest& request, int64_t past, int64_t T) const;
  // Error unless a pass of `batch` rows fits the row modes set (any batch when none are).
  void check_row_modes(int64_t batch) const;

  DecoderSpec spec_;
  torch::ScalarType dtype_;
  std::vector<torch::Device> layer_devices_;
  bool fused_attention_;
  torch::Tensor embedding_, position_embedding_;  // [V, d]; [max_positions, d] for learned positions
  std::vector<Block> blocks_;
  NormLayer final_norm_;
  torch::Tensor head_;      // [V, d], the embedding table when tied
  torch::Tensor inv_freq_;  // rotary: 1 / base^(arange(0, r, 2) / r), float32

  // set_row_attention_modes' rows, per layer: [B] bool on the layer's device, the rows short-circuited / zeroed there
  // (undefined where no row is, or where the layer's block mode says it for all rows). rows = 0: none set.
  struct RowModes {
    int64_t rows = 0;
    std::vector<torch::Tensor> short_circuit, zeroed;
  };
  RowModes row_modes_;
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
