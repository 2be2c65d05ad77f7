// GPT-NeoX in libtorch. Module and parameter names are the checkpoint's keys, so loading is a name lookup:
// gpt_neox.embed_in.weight, gpt_neox.layers.N.{input_layernorm, post_attention_layernorm,
// attention.query_key_value, attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h}.*,
// gpt_neox.final_layer_norm.*, embed_out.weight.
// Shapes: B batch, T tokens, d hidden, H heads, hd head size, r rotary dims, V vocabulary rows.
#include "worker/model/gpt_neox.h"

#include <tuple>

#include "worker/base/error.h"
#include "worker/model/layers.h"

namespace memsweep {


namespace {

// Per forward pass, shared by all layers: rotary tables, the additive attention mask, the cache.
struct AttentionInputs {
  torch::Tensor cos, sin;  // [B or 1, Tq, r] in the activation dtype
  torch::Tensor bias;      // [B or 1, 1, Tq, Tk]; undefined when `causal` says it all
  bool causal = false;     // fused, no padding, no cached keys: the kernel's own causal pattern, no bias tensor
  bool fused = true;       // scaled_dot_product_attention rather than the eager formula
  KVCache* cache = nullptr;
  torch::Tensor row_short_circuit, row_zeroed;  // [B] bool, the layer's rows under per-row modes (or undefined)
};

AttentionInputs on_device(const AttentionInputs& in, const torch::Device& device) {
  AttentionInputs out = in;
  for (torch::Tensor* t : {&out.cos, &out.sin, &out.bias})
    if (t->defined()) *t = t->to(device);
  return out;
}

// "rotate half" rotary on the first r dims of each head; x [B, H, T, hd].
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, int64_t r) {
  auto rotated = x.narrow(-1, 0, r);
  auto passed = x.narrow(-1, r, x.size(-1) - r);
  auto first = rotated.narrow(-1, 0, r / 2), second = rotated.narrow(-1, r / 2, r / 2);
  auto rotate_half = torch::cat({-second, first}, -1);
  auto embedded = rotated * cos.unsqueeze(1) + rotate_half * sin.unsqueeze(1);
  return torch::cat({embedded, passed}, -1);
}

class GPTNeoXAttentionImpl : public torch::nn::Module {
 public:
  GPTNeoXAttentionImpl(const GPTNeoXConfig& c, WeightLoader& w, const std::string& prefix, int layer)
      : config_(c), layer_(layer),
        query_key_value(register_module("query_key_value", Linear(w, prefix + "query_key_value.", c.hidden_size,
                                                                  3 * c.hidden_size, c.attention_bias))),
        dense(register_module("dense", Linear(w, prefix + "dense.", c.hidden_size, c.hidden_size, c.attention_bias))) {}

  void set_mode(AttentionMode mode) {
    mode_ = mode;
    value_weight_ = value_bias_ = torch::Tensor();
    if (mode != AttentionMode::short_circuit) return;
    // The fused projection is head-interleaved: row h*3hd + s*hd + e is (q, k, v)[s] of head h. Keep the v rows,
    // in head order, so short-circuited blocks never compute q and k.
    const int64_t d = config_.hidden_size, H = config_.num_heads, hd = config_.head_size;
    value_weight_ = query_key_value->weight.view({H, 3, hd, d}).select(1, 2).reshape({d, d}).contiguous();
    if (query_key_value->bias.defined())
      value_bias_ = query_key_value->bias.view({H, 3, hd}).select(1, 2).reshape({d}).contiguous();
  }
  AttentionMode mode() const { return mode_; }

  // x: the layer-normed block input [B, T, d]. Returns the attention sublayer's output [B, T, d], or an
  // undefined tensor for zero attention (the caller then adds nothing).
  torch::Tensor forward(const torch::Tensor& x, const AttentionInputs& in) {
    switch (mode_) {
      case AttentionMode::zero_attention: return {};
      case AttentionMode::short_circuit: return dense(torch::linear(x, value_weight_, value_bias_));
      case AttentionMode::normal: break;
    }
    const int64_t B = x.size(0), T = x.size(1), H = config_.num_heads, hd = config_.head_size;
    auto qkv = query_key_value(x).view({B, T, H, 3 * hd}).transpose(1, 2);  // [B, H, T, 3hd]
    auto parts = qkv.chunk(3, -1);
    torch::Tensor q = parts[0], k = parts[1], v = parts[2];
    const torch::Tensor own_value = v;  // [B, H, T, hd]: what a short-circuited row's attention returns
    if (config_.rotary_dims > 0) {
      q = apply_rotary(q, in.cos, in.sin, config_.rotary_dims);
      k = apply_rotary(k, in.cos, in.sin, config_.rotary_dims);
    }
    if (in.cache) std::tie(k, v) = in.cache->append(layer_, k, v);
    const double scale = std::pow(double(hd), -0.5);
    torch::Tensor context;  // [B, H, Tq, hd]
    if (in.fused) {
      context = at::scaled_dot_product_attention(q, k, v, in.causal ? std::optional<torch::Tensor>() : std::optional<torch::Tensor>(in.bias),
                                                 0.0, in.causal, scale);
    } else {
      auto scores = torch::matmul(q, k.transpose(2, 3)) * scale + in.bias;  // [B, H, Tq, Tk]
      // Softmax accumulates in fp32 whatever the activation dtype (transformers 5.x eager does the same).
      context = torch::matmul(torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type()), v);
    }
    if (in.row_short_circuit.defined()) context = torch::where(in.row_short_circuit.view({B, 1, 1, 1}), own_value, context);
    torch::Tensor out = dense(context.transpose(1, 2).reshape({B, T, H * hd}));
    if (in.row_zeroed.defined()) out = out.masked_fill(in.row_zeroed.view({B, 1, 1}), 0);
    return out;
  }

 private:
  GPTNeoXConfig config_;
  int layer_;
  AttentionMode mode_ = AttentionMode::normal;
  torch::Tensor value_weight_, value_bias_;  // [d, d], [d]: only while short-circuited

 public:
  Linear query_key_value, dense;
};
TORCH_MODULE(GPTNeoXAttention);

class GPTNeoXMLPImpl : public torch::nn::Module {
 public:
  GPTNeoXMLPImpl(const GPTNeoXConfig& c, WeightLoader& w, const std::string& prefix)
      : dense_h_to_4h(register_module("dense_h_to_4h", Linear(w, prefix + "dense_h_to_4h.", c.hidden_size, c.intermediate_size, true))),
        dense_4h_to_h(register_module("dense_4h_to_h", Linear(w, prefix + "dense_4h_to_h.", c.intermediate_size, c.hidden_size, true))) {}
  torch::Tensor forward(const torch::Tensor& x) { return dense_4h_to_h(torch::gelu(dense_h_to_4h(x))); }
  Linear dense_h_to_4h, dense_4h_to_h;
};
TORCH_MODULE(GPTNeoXMLP);

class GPTNeoXLayerImpl : public torch::nn::Module {
 public:
  GPTNeoXLayerImpl(const GPTNeoXConfig& c, WeightLoader& w, const std::string& prefix, int layer)
      : parallel_residual_(c.parallel_residual),
        input_layernorm(register_module("input_layernorm", LayerNorm(w, prefix + "input_layernorm.", c.hidden_size, c.layer_norm_eps))),
        post_attention_layernorm(register_module("post_attention_layernorm",
                                                 LayerNorm(w, prefix + "post_attention_layernorm.", c.hidden_size, c.layer_norm_eps))),
        attention(register_module("attention", GPTNeoXAttention(c, w, prefix + "attention.", layer))),
        mlp(register_module("mlp", GPTNeoXMLP(c, w, prefix + "mlp."))) {}

  torch::Tensor forward(const torch::Tensor& h, const AttentionInputs& in) {
    torch::Tensor attn = attention(input_layernorm(h), in);
    if (parallel_residual_) {  // h + attn(LN1(h)) + mlp(LN2(h)): LN2 reads the block input
      torch::Tensor out = mlp(post_attention_layernorm(h));
      if (attn.defined()) out = out + attn;
      return out + h;
    }
    torch::Tensor g = attn.defined() ? attn + h : h;  // sequential: g = h + attn(LN1(h)); g + mlp(LN2(g))
    return mlp(post_attention_layernorm(g)) + g;
  }

 private:
  bool parallel_residual_;

 public:
  LayerNorm input_layernorm, post_attention_layernorm;
  GPTNeoXAttention attention;
  GPTNeoXMLP mlp;
};
TORCH_MODULE(GPTNeoXLayer);

class GPTNeoXModelImpl : public torch::nn::Module {
 public:
  // Each part is read onto its device (w.at_*): the embeddings with the first layer, the final norm with the last.
  GPTNeoXModelImpl(const GPTNeoXConfig& c, WeightLoader& w) {
    w.at_first();
    embed_in = register_module("embed_in", Embedding(w, "gpt_neox.embed_in.", c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) {
      w.at_layer(i);
      layers->push_back(GPTNeoXLayer(c, w, "gpt_neox.layers." + std::to_string(i) + ".", int(i)));
    }
    w.at_last();
    final_layer_norm = register_module("final_layer_norm", LayerNorm(w, "gpt_neox.final_layer_norm.", c.hidden_size, c.layer_norm_eps));
  }
  Embedding embed_in{nullptr};
  torch::nn::ModuleList layers{nullptr};
  LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(GPTNeoXModel);

class GPTNeoX : public CausalLM, public torch::nn::Module {
 public:
  GPTNeoX(GPTNeoXConfig config, WeightLoader& w, bool fused_attention)
      : config_(std::move(config)), dtype_(w.dtype()), layer_devices_(w.layer_devices()), device_(layer_devices_.front()),
        fused_attention_(fused_attention), gpt_neox(register_module("gpt_neox", GPTNeoXModel(config_, w))) {
    w.at_last();
    if (config_.tie_word_embeddings) {
      embed_out = gpt_neox->embed_in->weight;
    } else {
      // transformers >= 5.14 calls the head lm_head in memory; files keep embed_out.weight.
      embed_out = register_parameter("embed_out", w.take_first_of({"embed_out.weight", "lm_head.weight"},
                                                                  {config_.vocab_size, config_.hidden_size}), false);
    }
    // inv_freq = 1 / base^(arange(0, r, 2) / r), in fp32 like transformers.
    const int64_t r = config_.rotary_dims;
    if (r > 0) {
      auto exponents = torch::arange(0, r, 2, torch::kInt64).to(torch::kFloat32) / double(r);
      inv_freq_ = (1.0 / torch::pow(torch::scalar_tensor(config_.rotary_base, torch::kFloat32), exponents)).to(device_);
    }
  }

  std::string architecture() const override { return "gpt_neox"; }
  int num_layers() const override { return int(config_.num_layers); }
  int64_t vocab_size() const override { return config_.vocab_size; }
  std::vector<int64_t> eos_token_ids() const override { return config_.eos_token_ids; }
  torch::ScalarType dtype() const override { return dtype_; }
  torch::Device device() const override { return device_; }
  const std::vector<torch::Device>& layer_devices() const override { return layer_devices_; }
  void set_attention_mode(int layer, AttentionMode mode) override { layer_at(layer)->attention->set_mode(mode); }
  AttentionMode attention_mode(int layer) const override {
    return gpt_neox->layers->at<GPTNeoXLayerImpl>(size_t(layer)).attention->mode();
  }

  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask, KVCache* cache,
                        std::vector<torch::Tensor>* layer_outputs, const ForwardStart& start, int64_t logits_last,
                        const torch::Tensor& logits_at) override {
    torch::InferenceMode inference;
    check_row_modes(ids.size(0));
    const int64_t T = ids.size(1), past = cache ? cache->length : 0;
    auto input = ids.to(device_, torch::kInt64);
    AttentionInputs in;
    in.cache = cache;
    // Fused kernels for passes over whole rows (teacher-forced passes, prefill); decode steps against cached keys
    // keep the eager formula: one query per row gains nothing from them, and on an H200 the memorization sweep
    // ran 3.6x slower with its decode steps fused (bench/RESULTS.md).
    in.fused = fused_attention_ && past == 0;
    in.causal = in.fused && !mask.defined();
    if (!in.causal) in.bias = causal_attention_bias(mask, T, past + T, dtype_, device_);
    if (config_.rotary_dims > 0) {
      auto positions = token_positions(mask, past + T, T, device_).to(torch::kFloat32);  // [B or 1, T]
      auto freqs = positions.unsqueeze(-1) * inv_freq_;                                    // [B or 1, T, r/2]
      auto angles = torch::cat({freqs, freqs}, -1);
      in.cos = angles.cos().to(dtype_);
      in.sin = angles.sin().to(dtype_);
    }
    torch::Tensor h = start.layer > 0 ? start.hidden : gpt_neox->embed_in(input);
    AttentionInputs here = in;  // `in` on the device of the layer running (a split model moves it with h)
    torch::Device here_device = device_;
    for (int64_t i = start.layer; i < config_.num_layers; ++i) {
      const torch::Device& device = layer_devices_[size_t(i)];
      if (h.device() != device) h = h.to(device);
      if (here_device != device) here = on_device(in, device), here_device = device;
      if (row_modes_.rows > 0) here.row_short_circuit = row_modes_.short_circuit[size_t(i)], here.row_zeroed = row_modes_.zeroed[size_t(i)];
      h = layer_at(int(i))->forward(h, here);
      if (layer_outputs) layer_outputs->push_back(h);
    }
    if (cache) cache->length += T;
    return logits_of_last(h, logits_last, logits_at);
  }

  torch::Tensor logits_from_residual(const torch::Tensor& h) override {
    torch::InferenceMode inference;
    auto normed = gpt_neox->final_layer_norm(h.to(gpt_neox->final_layer_norm->weight.device()));
    return torch::linear(normed.to(embed_out.device()), embed_out);
  }

 private:
  GPTNeoXLayerImpl* layer_at(int layer) { return &gpt_neox->layers->at<GPTNeoXLayerImpl>(size_t(layer)); }

  GPTNeoXConfig config_;
  torch::ScalarType dtype_;
  std::vector<torch::Device> layer_devices_;
  torch::Device device_;
  bool fused_attention_;
  torch::Tensor inv_freq_;

 public:
  GPTNeoXModel gpt_neox;
  torch::Tensor embed_out;
};

}  // namespace

std::unique_ptr<CausalLM> build_gpt_neox(const ConfigReader& config, WeightLoader& weights, const LoadOptions& options) {
  return std::make_unique<GPTNeoX>(GPTNeoXConfig::read(config), weights, options.fused_attention);
}

}  // namespace memsweep
