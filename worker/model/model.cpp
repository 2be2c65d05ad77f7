#include "worker/model/model.h"

#include <algorithm>

#include "worker/base/error.h"
#include "worker/base/layer_split.h"
#include "worker/model/config_reader.h"
#include "worker/model/gpt_neo.h"
#include "worker/model/gpt_neox.h"

namespace memsweep {

const char* attention_mode_name(AttentionMode mode) {
  switch (mode) {
    case AttentionMode::normal: return "normal";
    case AttentionMode::short_circuit: return "short_circuit";
    case AttentionMode::zero_attention: return "zero_attention";
  }
  return "?";
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int layer, const torch::Tensor& k, const torch::Tensor& v) {
  if (keys.size() <= size_t(layer)) keys.resize(size_t(layer) + 1), values.resize(size_t(layer) + 1);
  auto& key = keys[size_t(layer)];
  auto& value = values[size_t(layer)];
  const bool room = key.defined() && size_t(layer) < key_storage_.size() && key_storage_[size_t(layer)].defined() &&
                    key.data_ptr() == key_storage_[size_t(layer)].data_ptr() && key.size(0) == k.size(0) &&
                    key.size(2) + k.size(2) <= key_storage_[size_t(layer)].size(2);
  if (room) {
    const int64_t held = key.size(2);
    key_storage_[size_t(layer)].narrow(2, held, k.size(2)).copy_(k);
    value_storage_[size_t(layer)].narrow(2, held, v.size(2)).copy_(v);
    key = key_storage_[size_t(layer)].narrow(2, 0, held + k.size(2));
    value = value_storage_[size_t(layer)].narrow(2, 0, held + v.size(2));
  } else {
    key = key.defined() ? torch::cat({key, k}, 2) : k;
    value = value.defined() ? torch::cat({value, v}, 2) : v;
  }
  return {key, value};
}

void KVCache::reserve(int64_t more) {
  key_storage_.assign(keys.size(), torch::Tensor());
  value_storage_.assign(values.size(), torch::Tensor());
  for (size_t layer = 0; layer < keys.size(); ++layer) {
    if (!keys[layer].defined()) continue;
    auto make_room = [&](torch::Tensor& held, torch::Tensor& storage) {
      std::vector<int64_t> shape = held.sizes().vec();
      shape[2] += more;
      storage = torch::empty(shape, held.options());
      storage.narrow(2, 0, held.size(2)).copy_(held);
      held = storage.narrow(2, 0, held.size(2));
    };
    make_room(keys[layer], key_storage_[layer]);
    make_room(values[layer], value_storage_[layer]);
  }
}

void CausalLM::clear_interventions() {
  for (int layer = 0; layer < num_layers(); ++layer) set_attention_mode(layer, AttentionMode::normal);
  row_modes_ = RowModes();
}

void CausalLM::set_row_attention_modes(const std::vector<std::vector<AttentionMode>>& rows) {
  clear_interventions();
  const int layers = num_layers();
  for (size_t r = 0; r < rows.size(); ++r)
    if (int(rows[r].size()) != layers)
      throw Error("row " + std::to_string(r) + " lists attention modes of " + std::to_string(rows[r].size()) + " layers; the model has " +
                  std::to_string(layers));
  if (rows.empty()) return;
  RowModes modes;
  modes.rows = int64_t(rows.size());
  modes.short_circuit.resize(size_t(layers));
  modes.zeroed.resize(size_t(layers));
  for (int layer = 0; layer < layers; ++layer) {
    const AttentionMode first = rows[0][size_t(layer)];
    bool uniform = true;
    std::vector<uint8_t> short_circuit, zeroed;
    for (const auto& row : rows) {
      uniform = uniform && row[size_t(layer)] == first;
      short_circuit.push_back(row[size_t(layer)] == AttentionMode::short_circuit);
      zeroed.push_back(row[size_t(layer)] == AttentionMode::zero_attention);
    }
    if (uniform) {
      set_attention_mode(layer, first);
      continue;
    }
    const torch::Device& device = layer_devices()[size_t(layer)];
    auto as_tensor = [&](const std::vector<uint8_t>& flags) {
      if (std::find(flags.begin(), flags.end(), 1) == flags.end()) return torch::Tensor();
      return torch::tensor(std::vector<int64_t>(flags.begin(), flags.end()), torch::kInt64).to(torch::kBool).to(device);
    };
    modes.short_circuit[size_t(layer)] = as_tensor(short_circuit);
    modes.zeroed[size_t(layer)] = as_tensor(zeroed);
  }
  row_modes_ = std::move(modes);
}

void CausalLM::check_row_modes(int64_t batch) const {
  if (row_modes_.rows > 0 && batch != row_modes_.rows)
    throw Error("a pass of " + std::to_string(batch) + " rows under attention modes set for " + std::to_string(row_modes_.rows) + " rows");
}

torch::Tensor CausalLM::logits_of_last(const torch::Tensor& h, int64_t logits_last, const torch::Tensor& logits_at) {
  if (logits_at.defined()) return logits_from_residual(h.reshape({-1, h.size(-1)}).index_select(0, logits_at.to(h.device())));
  if (logits_last == 0) return h;
  const int64_t T = h.size(1);
  return logits_from_residual(logits_last > 0 && logits_last < T ? h.narrow(1, T - logits_last, logits_last) : h);
}

void CausalLM::set_attention_mode(const std::vector<int>& layers, AttentionMode mode) {
  for (int layer : layers) {
    if (layer < 0 || layer >= num_layers())
      throw Error("block " + std::to_string(layer) + " does not exist: the model has " + std::to_string(num_layers()) +
                  " blocks, numbered 0 to " + std::to_string(num_layers() - 1));
    set_attention_mode(layer, mode);
  }
}

PaddedBatch left_pad(const std::vector<std::vector<int64_t>>& rows, size_t first, size_t count) {
  PaddedBatch batch;
  for (size_t i = 0; i < count; ++i) {
    if (rows[first + i].empty()) throw Error("row " + std::to_string(first + i) + " has no tokens");
    batch.length = std::max<int64_t>(batch.length, int64_t(rows[first + i].size()));
  }
  batch.ids = torch::zeros({int64_t(count), batch.length}, torch::kInt64);
  batch.mask = torch::zeros({int64_t(count), batch.length}, torch::kInt64);
  for (size_t i = 0; i < count; ++i) {
    const auto& row = rows[first + i];
    const int64_t pad = batch.length - int64_t(row.size());
    batch.padded |= pad > 0;
    batch.ids[int64_t(i)].narrow(0, pad, int64_t(row.size())).copy_(torch::tensor(row, torch::kInt64));
    batch.mask[int64_t(i)].narrow(0, pad, int64_t(row.size())).fill_(1);
  }
  return batch;
}

namespace {
// One line per architecture: config.json's model_type, its builder, the buffers older files carry that it skips.
struct Architecture {
  const char* model_type;
  std::unique_ptr<CausalLM> (*build)(const ConfigReader&, WeightLoader&, const LoadOptions&);
  std::vector<std::string> skipped_suffixes;
};
const Architecture kArchitectures[] = {
    {"gpt_neox", build_gpt_neox, {"attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"}},
    {"gpt_neo", build_gpt_neo, {"attn.attention.bias", "attn.attention.masked_bias"}},
};
}  // namespace

std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir, const LoadOptions& options) {
  ConfigReader config(model_dir);
  const std::string model_type = config.require_string("model_type");
  std::string known;
  for (const auto& architecture : kArchitectures) {
    known += (known.empty() ? "" : ", ") + std::string(architecture.model_type);
    if (model_type != architecture.model_type) continue;
    Checkpoint checkpoint = Checkpoint::open(model_dir);
    WeightLoader weights(checkpoint, options.dtype, place_layers(read_model_size(model_dir), options.device, options.devices));
    auto model = architecture.build(config, weights, options);
    checkpoint.check_all_taken(architecture.skipped_suffixes);
    return model;
  }
  config.fail("model_type", "'" + model_type + "' is not supported (supported: " + known + ")");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "float16" || name == "fp16") return torch::kFloat16;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  throw Error("unknown dtype '" + name + "' (expected float32, float16 or bfloat16)");
}

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw Error("unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
  }
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Error("device '" + name + "' asked for, but this libtorch has no CUDA or no GPU is visible");
  if (!device.is_cpu() && !device.is_cuda()) throw Error("device '" + name + "' is not supported (cpu or cuda:N)");
  return device;
}

std::vector<torch::Device> place_layers(const ModelSize& size, torch::Device device, int devices) {
  const int64_t layers = size.layers;
  if (devices == 1) return std::vector<torch::Device>(size_t(layers), device);
  const std::vector<int> device_of = split_layers(layers, devices, double(size.first_parameters), double(size.layer_parameters),
                                                  double(size.last_parameters));
  const int first = device.is_cuda() ? std::max<int>(0, device.index()) : 0;
  if (device.is_cuda() && first + devices > int(torch::cuda::device_count()))
    throw Error("a model split over " + std::to_string(devices) + " devices from cuda:" + std::to_string(first) + " needs cuda:" +
                std::to_string(first) + " to cuda:" + std::to_string(first + devices - 1) + ", but " +
                std::to_string(torch::cuda::device_count()) + " GPUs are visible");
  std::vector<torch::Device> placement;
  for (int64_t l = 0; l < layers; ++l)
    placement.push_back(device.is_cuda() ? torch::Device(torch::kCUDA, c10::DeviceIndex(first + device_of[size_t(l)])) : device);
  return placement;
}

}  // namespace memsweep
