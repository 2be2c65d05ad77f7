// GPT-Neo in libtorch. Module and parameter names are the checkpoint's keys: transformer.wte.weight,
// transformer.wpe.weight, transformer.h.N.{ln_1, attn.attention.{q_proj, k_proj, v_proj, out_proj}, ln_2,
// mlp.c_fc, mlp.c_proj}.*, transformer.ln_f.*, lm_head.weight (absent when tied to wte).
// Shapes: B batch, T tokens, d hidden, H heads, hd head size, V vocabulary rows.
#include "worker/model/gpt_neo.h"

#include <cmath>
#include <tuple>

#include "worker/base/error.h"
#include "worker/model/layers.h"

namespace memsweep {


namespace {

struct AttentionInputs {
  torch::Tensor global_bias, local_bias;  // float32 [B or 1, 1, Tq, Tk]
  KVCache* cache = nullptr;
  torch::Tensor row_short_circuit, row_zeroed;  // [B] bool, the layer's rows under per-row modes (or undefined)
};

// gelu_new, written as transformers' NewGELUActivation so rounding matches.
torch::Tensor gelu_new(const torch::Tensor& x) {
  return 0.5 * x * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3.0))));
}

class GPTNeoSelfAttentionImpl : public torch::nn::Module {
 public:
  GPTNeoSelfAttentionImpl(const GPTNeoConfig& c, WeightLoader& w, const std::string& prefix, int layer)
      : layer_(layer), local_(c.local_layers[size_t(layer)]), heads_(c.num_heads), head_size_(c.head_size),
        q_proj(register_module("q_proj", Linear(w, prefix + "q_proj.", c.hidden_size, c.hidden_size, false))),
        k_proj(register_module("k_proj", Linear(w, prefix + "k_proj.", c.hidden_size, c.hidden_size, false))),
        v_proj(register_module("v_proj", Linear(w, prefix + "v_proj.", c.hidden_size, c.hidden_size, false))),
        out_proj(register_module("out_proj", Linear(w, prefix + "out_proj.", c.hidden_size, c.hidden_size, true))) {}

  AttentionMode mode = AttentionMode::normal;

  // x: ln_1 of the block input [B, T, d]. The attention sublayer's output, undefined for zero attention.
  torch::Tensor forward(const torch::Tensor& x, const AttentionInputs& in) {
    switch (mode) {
      case AttentionMode::zero_attention: return {};
      case AttentionMode::short_circuit: return out_proj(v_proj(x));  // o_t = v_t
      case AttentionMode::normal: break;
    }
    const int64_t B = x.size(0), T = x.size(1);
    auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads_, head_size_}).permute({0, 2, 1, 3}); };
    torch::Tensor q = split(q_proj(x)), k = split(k_proj(x)), v = split(v_proj(x));  // [B, H, T, hd]
    const torch::Tensor own_value = v;  // what a short-circuited row's attention returns
    if (in.cache) std::tie(k, v) = in.cache->append(layer_, k, v);
    // q and k in fp32 and no 1/sqrt(hd) scaling: GPT-Neo was trained that way.
    auto scores = torch::matmul(q.to(torch::kFloat32), k.to(torch::kFloat32).transpose(-1, -2));
    scores = scores + (local_ ? in.local_bias : in.global_bias);
    auto probs = torch::softmax(scores, -1).to(v.scalar_type());
    torch::Tensor context = torch::matmul(probs, v);
    if (in.row_short_circuit.defined()) context = torch::where(in.row_short_circuit.view({B, 1, 1, 1}), own_value, context);
    torch::Tensor out = out_proj(context.permute({0, 2, 1, 3}).contiguous().view({B, T, heads_ * head_size_}));
    if (in.row_zeroed.defined()) out = out.masked_fill(in.row_zeroed.view({B, 1, 1}), 0);
    return out;
  }

 private:
  int layer_;
  bool local_;
  int64_t heads_, head_size_;

 public:
  Linear q_proj, k_proj, v_proj, out_proj;
};
TORCH_MODULE(GPTNeoSelfAttention);

// transformers nests the projections one level deeper: attn.attention.q_proj.
class GPTNeoAttentionImpl : public torch::nn::Module {
 public:
  GPTNeoAttentionImpl(const GPTNeoConfig& c, WeightLoader& w, const std::string& prefix, int layer)
      : attention(register_module("attention", GPTNeoSelfAttention(c, w, prefix + "attention.", layer))) {}
  GPTNeoSelfAttention attention;
};
TORCH_MODULE(GPTNeoAttention);

class GPTNeoMLPImpl : public torch::nn::Module {
 public:
  GPTNeoMLPImpl(const GPTNeoConfig& c, WeightLoader& w, const std::string& prefix)
      : c_fc(register_module("c_fc", Linear(w, prefix + "c_fc.", c.hidden_size, c.intermediate_size, true))),
        c_proj(register_module("c_proj", Linear(w, prefix + "c_proj.", c.intermediate_size, c.hidden_size, true))) {}
  torch::Tensor forward(const torch::Tensor& x) { return c_proj(gelu_new(c_fc(x))); }
  Linear c_fc, c_proj;
};
TORCH_MODULE(GPTNeoMLP);

class GPTNeoBlockImpl : public torch::nn::Module {
 public:
  GPTNeoBlockImpl(const GPTNeoConfig& c, WeightLoader& w, const std::string& prefix, int layer)
      : ln_1(register_module("ln_1", LayerNorm(w, prefix + "ln_1.", c.hidden_size, c.layer_norm_eps))),
        attn(register_module("attn", GPTNeoAttention(c, w, prefix + "attn.", layer))),
        ln_2(register_module("ln_2", LayerNorm(w, prefix + "ln_2.", c.hidden_size, c.layer_norm_eps))),
        mlp(register_module("mlp", GPTNeoMLP(c, w, prefix + "mlp."))) {}

  torch::Tensor forward(const torch::Tensor& h, const AttentionInputs& in) {
    torch::Tensor attention = attn->attention(ln_1(h), in);
    torch::Tensor g = attention.defined() ? attention + h : h;  // sequential residual
    return g + mlp(ln_2(g));
  }
  LayerNorm ln_1;
  GPTNeoAttention attn;
  LayerNorm ln_2;
  GPTNeoMLP mlp;
};
TORCH_MODULE(GPTNeoBlock);

class GPTNeoModelImpl : public torch::nn::Module {
 public:
  // Each part is read onto its device (w.at_*): the embeddings with the first layer, the final norm with the last.
  GPTNeoModelImpl(const GPTNeoConfig& c, WeightLoader& w) {
    w.at_first();
    wte = register_module("wte", Embedding(w, "transformer.wte.", c.vocab_size, c.hidden_size));
    wpe = register_module("wpe", Embedding(w, "transformer.wpe.", c.max_positions, c.hidden_size));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) {
      w.at_layer(i);
      h->push_back(GPTNeoBlock(c, w, "transformer.h." + std::to_string(i) + ".", int(i)));
    }
    w.at_last();
    ln_f = register_module("ln_f", LayerNorm(w, "transformer.ln_f.", c.hidden_size, c.layer_norm_eps));
  }
  Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  LayerNorm ln_f{nullptr};
};
TORCH_MODULE(GPTNeoModel);

class GPTNeo : public CausalLM, public torch::nn::Module {
 public:
  GPTNeo(GPTNeoConfig config, WeightLoader& w)
      : config_(std::move(config)), dtype_(w.dtype()), layer_devices_(w.layer_devices()), device_(layer_devices_.front()),
        transformer(register_module("transformer", GPTNeoModel(config_, w))) {
    w.at_last();
    lm_head = config_.tie_word_embeddings
                  ? transformer->wte->weight
                  : register_parameter("lm_head", w.take("lm_head.weight", {config_.vocab_size, config_.hidden_size}), false);
  }

  std::string architecture() const override { return "gpt_neo"; }
  int num_layers() const override { return int(config_.num_layers); }
  int64_t vocab_size() const override { return config_.vocab_size; }
  std::vector<int64_t> eos_token_ids() const override { return config_.eos_token_ids; }
  torch::ScalarType dtype() const override { return dtype_; }
  torch::Device device() const override { return device_; }
  const std::vector<torch::Device>& layer_devices() const override { return layer_devices_; }
  void set_attention_mode(int layer, AttentionMode mode) override { block(layer).attn->attention->mode = mode; }
  AttentionMode attention_mode(int layer) const override {
    return transformer->h->at<GPTNeoBlockImpl>(size_t(layer)).attn->attention->mode;
  }

  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask, KVCache* cache,
                        std::vector<torch::Tensor>* layer_outputs, const ForwardStart& start, int64_t logits_last,
                        const torch::Tensor& logits_at) override {
    torch::InferenceMode inference;
    check_row_modes(ids.size(0));
    const int64_t T = ids.size(1), past = cache ? cache->length : 0;
    auto positions = token_positions(mask, past + T, T, device_);
    if (positions.max().item<int64_t>() >= config_.max_positions)
      throw Error("sequence of " + std::to_string(past + T) + " tokens is longer than the model's " +
                  std::to_string(config_.max_positions) + " learned positions");
    AttentionInputs in;
    in.cache = cache;
    in.global_bias = causal_attention_bias(mask, T, past + T, torch::kFloat32, device_);
    in.local_bias = causal_attention_bias(mask, T, past + T, torch::kFloat32, device_, config_.window_size);
    torch::Tensor h = start.layer > 0 ? start.hidden
                                      : transformer->wte(ids.to(device_, torch::kInt64)) + transformer->wpe(positions);
    AttentionInputs here = in;  // `in` on the device of the layer running (a split model moves it with h)
    torch::Device here_device = device_;
    for (int64_t i = start.layer; i < config_.num_layers; ++i) {
      const torch::Device& device = layer_devices_[size_t(i)];
      if (h.device() != device) h = h.to(device);
      if (here_device != device) {
        here.global_bias = in.global_bias.to(device), here.local_bias = in.local_bias.to(device);
        here_device = device;
      }
      if (row_modes_.rows > 0) here.row_short_circuit = row_modes_.short_circuit[size_t(i)], here.row_zeroed = row_modes_.zeroed[size_t(i)];
      h = block(int(i)).forward(h, here);
      if (layer_outputs) layer_outputs->push_back(h);
    }
    if (cache) cache->length += T;
    return logits_of_last(h, logits_last, logits_at);
  }

  torch::Tensor logits_from_residual(const torch::Tensor& h) override {
    torch::InferenceMode inference;
    auto normed = transformer->ln_f(h.to(transformer->ln_f->weight.device()));
    return torch::linear(normed.to(lm_head.device()), lm_head);
  }

 private:
  GPTNeoBlockImpl& block(int layer) { return transformer->h->at<GPTNeoBlockImpl>(size_t(layer)); }

  GPTNeoConfig config_;
  torch::ScalarType dtype_;
  std::vector<torch::Device> layer_devices_;
  torch::Device device_;

 public:
  GPTNeoModel transformer;
  torch::Tensor lm_head;
};

}  // namespace

std::unique_ptr<CausalLM> build_gpt_neo(const ConfigReader& config, WeightLoader& weights, const LoadOptions&) {
  return std::make_unique<GPTNeo>(GPTNeoConfig::read(config), weights);
}

}  // namespace memsweep
