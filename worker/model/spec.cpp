#include "worker/model/spec.h"

#include <cmath>

namespace memsweep {

void read_sizes(const ConfigReader& config, DecoderSpec& c, const char* layers_key, const char* heads_key) {
  c.vocab_size = config.require_int("vocab_size");
  c.hidden_size = config.require_int("hidden_size");
  c.num_layers = config.require_int(layers_key);
  c.num_heads = config.require_int(heads_key);
  for (const auto& [key, value] : {std::pair<std::string, int64_t>{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                                   {layers_key, c.num_layers}, {heads_key, c.num_heads}})
    if (value <= 0) config.fail(key, "must be positive, found " + std::to_string(value));
  c.num_kv_heads = c.num_heads;
  if (config.has("head_dim")) {
    c.head_size = config.get_int("head_dim", 0);
    if (c.head_size <= 0) config.fail("head_dim", "must be positive");
  } else {
    if (c.hidden_size % c.num_heads != 0)
      config.fail(heads_key, std::to_string(c.num_heads) + " does not divide hidden_size " + std::to_string(c.hidden_size));
    c.head_size = c.hidden_size / c.num_heads;
  }
}

void read_decoder_keys(const ConfigReader& config, DecoderSpec& c, bool tied) {
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", tied);
  c.max_positions = config.get_int("max_position_embeddings", 2048);
  c.eos_token_ids = config.get_int_list("eos_token_id");
  c.windows.assign(size_t(c.num_layers), 0);
  c.attention_scale = std::pow(double(c.head_size), -0.5);
}

int64_t TensorSpec::elements() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<TensorSpec> DecoderSpec::first_tensors() const {
  std::vector<TensorSpec> tensors = {{Role::embedding, {embedding_name}, {vocab_size, hidden_size}}};
  if (positions == Positions::learned)
    tensors.push_back({Role::position_embedding, {position_embedding_name}, {max_positions, hidden_size}});
  return tensors;
}

std::vector<TensorSpec> DecoderSpec::layer_tensors(int64_t layer) const {
  const std::string prefix = layer_prefix + std::to_string(layer) + ".";
  const int64_t d = hidden_size, q = num_heads * head_size, kv = kv_width(), inner = intermediate_size;
  std::vector<TensorSpec> tensors;
  auto add = [&](Role role, const std::string& name, std::vector<int64_t> shape) {
    tensors.push_back({role, {prefix + name}, std::move(shape)});
  };
  const bool norm_bias = norm == Norm::layer_norm;
  add(Role::attention_norm_weight, attention_norm_name + ".weight", {d});
  if (norm_bias) add(Role::attention_norm_bias, attention_norm_name + ".bias", {d});
  add(Role::mlp_norm_weight, mlp_norm_name + ".weight", {d});
  if (norm_bias) add(Role::mlp_norm_bias, mlp_norm_name + ".bias", {d});
  if (qkv_layout == QKVLayout::fused_interleaved) {
    add(Role::qkv_weight, qkv_name + ".weight", {q + 2 * kv, d});
    if (qkv_bias) add(Role::qkv_bias, qkv_name + ".bias", {q + 2 * kv});
  } else {
    add(Role::q_weight, q_name + ".weight", {q, d});
    if (qkv_bias) add(Role::q_bias, q_name + ".bias", {q});
    add(Role::k_weight, k_name + ".weight", {kv, d});
    if (qkv_bias) add(Role::k_bias, k_name + ".bias", {kv});
    add(Role::v_weight, v_name + ".weight", {kv, d});
    if (qkv_bias) add(Role::v_bias, v_name + ".bias", {kv});
  }
  add(Role::out_weight, out_name + ".weight", {d, q});
  if (out_bias) add(Role::out_bias, out_name + ".bias", {d});
  if (qk_norm) add(Role::q_norm_weight, q_norm_name + ".weight", {q}), add(Role::k_norm_weight, k_norm_name + ".weight", {kv});
  if (mlp == Mlp::gated) {
    add(Role::gate_weight, gate_name + ".weight", {inner, d});
    if (mlp_bias) add(Role::gate_bias, gate_name + ".bias", {inner});
  }
  add(Role::up_weight, up_name + ".weight", {inner, d});
  if (mlp_bias) add(Role::up_bias, up_name + ".bias", {inner});
  add(Role::down_weight, down_name + ".weight", {d, inner});
  if (mlp_bias) add(Role::down_bias, down_name + ".bias", {d});
  return tensors;
}

std::vector<TensorSpec> DecoderSpec::last_tensors() const {
  std::vector<TensorSpec> tensors = {{Role::final_norm_weight, {final_norm_name + ".weight"}, {hidden_size}}};
  if (norm == Norm::layer_norm) tensors.push_back({Role::final_norm_bias, {final_norm_name + ".bias"}, {hidden_size}});
  if (!tie_word_embeddings) tensors.push_back({Role::head, head_names, {vocab_size, hidden_size}});
  return tensors;
}

namespace {
struct Architecture {
  const char* model_type;
  DecoderSpec (*read)(const ConfigReader&);
};
const Architecture kArchitectures[] = {{"gpt_neox", read_gpt_neox}, {"gpt_neo", read_gpt_neo}, {"llama", read_llama},
                                       {"mistral", read_mistral},   {"qwen2", read_qwen2},   {"olmo2", read_olmo2}};
}  // namespace

DecoderSpec read_decoder_spec(const ConfigReader& config) {
  const std::string model_type = config.require_string("model_type");
  std::string known;
  for (const Architecture& architecture : kArchitectures) {
    if (model_type == architecture.model_type) {
      DecoderSpec spec = architecture.read(config);
      spec.model_type = model_type;
      return spec;
    }
    known += (known.empty() ? "" : ", ") + std::string(architecture.model_type);
  }
  config.fail("model_type", "'" + model_type + "' is not supported (supported: " + known + ")");
}

}  // namespace memsweep
