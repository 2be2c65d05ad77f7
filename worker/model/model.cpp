#include "worker/model/model.h"

#include <algorithm>
#include <cmath>

#include "worker/base/error.h"
#include "worker/base/layer_split.h"
#include "worker/model/config_reader.h"
#include "worker/model/weights.h"

namespace memsweep {

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

// One block: norms, attention and MLP, and how the residual stream passes them.
struct CausalLM::Block {
  Block(const DecoderSpec& spec, int layer, const PartWeights& w)
      : attention_norm{w[Role::attention_norm_weight], w[Role::attention_norm_bias], spec.norm_eps, spec.norm},
        mlp_norm{w[Role::mlp_norm_weight], w[Role::mlp_norm_bias], spec.norm_eps, spec.norm}, attention(spec, layer, w),
        gate{w[Role::gate_weight], w[Role::gate_bias]}, up{w[Role::up_weight], w[Role::up_bias]}, down{w[Role::down_weight], w[Role::down_bias]},
        activation(spec.activation), placement(spec.norm_placement), parallel_residual(spec.parallel_residual) {}

  torch::Tensor mlp(const torch::Tensor& x) const {
    torch::Tensor u = gate.weight.defined() ? gate(x) : up(x);
    switch (activation) {
      case Activation::gelu: u = torch::gelu(u); break;
      // Written as transformers' NewGELUActivation, so rounding matches.
      case Activation::gelu_tanh: u = 0.5 * u * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (u + 0.044715 * torch::pow(u, 3.0)))); break;
      case Activation::silu: u = torch::silu(u); break;
    }
    return down(gate.weight.defined() ? u * up(x) : u);
  }

  torch::Tensor forward(const torch::Tensor& h, const AttentionInputs& in) const {
    if (placement == NormPlacement::after) {  // g = h + N1(attn(h)); g + N2(mlp(g))
      torch::Tensor attn = attention.forward(h, in);
      torch::Tensor g = attn.defined() ? attention_norm(attn) + h : h;
      return mlp_norm(mlp(g)) + g;
    }
    torch::Tensor attn = attention.forward(attention_norm(h), in);  // undefined: zero attention adds nothing
    if (parallel_residual) {  // h + attn(N1(h)) + mlp(N2(h)): N2 reads the block input
      torch::Tensor out = mlp(mlp_norm(h));
      if (attn.defined()) out = out + attn;
      return out + h;
    }
    torch::Tensor g = attn.defined() ? attn + h : h;  // sequential: g = h + attn(N1(h)); g + mlp(N2(g))
    return mlp(mlp_norm(g)) + g;
  }

  NormLayer attention_norm, mlp_norm;
  Attention attention;
  Linear gate, up, down;  // gate: gated MLPs only
  Activation activation;
  NormPlacement placement;
  bool parallel_residual;
};

namespace {
// Rotary inverse frequencies 1 / base^(arange(0, r, 2) / r) in float32, scaled as the spec's rope_type says, in the
// operations transformers' rope initializers use (so every value is the same float).
torch::Tensor rotary_inverse_frequencies(const DecoderSpec& spec) {
  const int64_t r = spec.rotary_dims;
  auto exponents = torch::arange(0, r, 2, torch::kInt64).to(torch::kFloat32) / double(r);
  torch::Tensor inv_freq = 1.0 / torch::pow(torch::scalar_tensor(spec.rotary_base, torch::kFloat32), exponents);
  const double factor = spec.rope_factor;
  switch (spec.rope_scaling) {
    case RopeScaling::none: break;
    case RopeScaling::linear: inv_freq = inv_freq / factor; break;
    case RopeScaling::llama3: {
      const double old_context = spec.rope_original_max_positions, low = spec.rope_low_freq_factor, high = spec.rope_high_freq_factor;
      const double low_freq_wavelength = old_context / low, high_freq_wavelength = old_context / high;
      const torch::Tensor wavelength = inv_freq.reciprocal() * (2 * M_PI);  // Python's 2 * pi / inv_freq
      torch::Tensor scaled = torch::where(wavelength > low_freq_wavelength, inv_freq / factor, inv_freq);
      const torch::Tensor smooth = (wavelength.reciprocal() * old_context - low) / (high - low);
      const torch::Tensor smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      const torch::Tensor medium = (wavelength < high_freq_wavelength).logical_not() & (wavelength > low_freq_wavelength).logical_not();
      inv_freq = torch::where(medium, smoothed, scaled);
      break;
    }
  }
  return inv_freq;
}
}  // namespace

CausalLM::CausalLM(DecoderSpec spec, WeightLoader& w, const LoadOptions& options)
    : spec_(std::move(spec)), dtype_(w.dtype()), layer_devices_(w.layer_devices()), fused_attention_(options.fused_attention) {
  // Each part is read onto its device: the embeddings with the first layer, the final norm and head with the last.
  w.at_first();
  const PartWeights first = take_part(w, spec_.first_tensors());
  embedding_ = first[Role::embedding], position_embedding_ = first[Role::position_embedding];
  blocks_.reserve(size_t(spec_.num_layers));
  for (int64_t i = 0; i < spec_.num_layers; ++i) {
    w.at_layer(i);
    blocks_.emplace_back(spec_, int(i), take_part(w, spec_.layer_tensors(i)));
  }
  w.at_last();
  const PartWeights last = take_part(w, spec_.last_tensors());
  final_norm_ = {last[Role::final_norm_weight], last[Role::final_norm_bias], spec_.norm_eps, spec_.norm};
  head_ = spec_.tie_word_embeddings ? embedding_ : last[Role::head];
  if (spec_.positions == Positions::rotary && spec_.rotary_dims > 0) inv_freq_ = rotary_inverse_frequencies(spec_).to(device());
}

CausalLM::~CausalLM() = default;

void CausalLM::set_attention_mode(int layer, AttentionMode mode) { blocks_.at(size_t(layer)).attention.set_mode(mode); }

AttentionMode CausalLM::attention_mode(int layer) const { return blocks_.at(size_t(layer)).attention.mode(); }

AttentionInputs CausalLM::attention_inputs(const ForwardRequest& request, int64_t past, int64_t T) const {
  AttentionInputs in;
  in.cache = request.cache;
  // Fused kernels for passes over whole rows (teacher-forced passes, prefill); decode steps against cached keys keep
  // the eager formula: one query per row gains nothing from them (bench/RESULTS.md).
  in.fused = fused_attention_ && !spec_.float32_scores && past == 0;
  // The kernel's own causal pattern where it says it all: no padding, no windows.
  in.causal = in.fused && !request.mask.defined() &&
              std::all_of(spec_.windows.begin(), spec_.windows.end(), [](int64_t window) { return window == 0; });
  if (!in.causal) {
    const torch::ScalarType bias_dtype = spec_.float32_scores ? torch::kFloat32 : dtype_;
    for (int64_t window : spec_.windows)
      if (!in.bias.count(window)) in.bias[window] = causal_attention_bias(request.mask, T, past + T, bias_dtype, device(), window);
  }
  if (inv_freq_.defined()) {
    auto positions = token_positions(request.mask, past + T, T, device()).to(torch::kFloat32);  // [B or 1, T]
    auto freqs = positions.unsqueeze(-1) * inv_freq_;                                          // [B or 1, T, r/2]
    auto angles = torch::cat({freqs, freqs}, -1);
    const torch::ScalarType rotary_dtype = spec_.rotary_float32 ? torch::kFloat32 : dtype_;
    in.cos = angles.cos().to(rotary_dtype);
    in.sin = angles.sin().to(rotary_dtype);
  }
  return in;
}

torch::Tensor CausalLM::forward(const ForwardRequest& request) {
  torch::InferenceMode inference;
  check_row_modes(request.ids.size(0));
  const int64_t T = request.ids.size(1), past = request.cache ? request.cache->length : 0;
  const AttentionInputs in = attention_inputs(request, past, T);
  torch::Tensor h = request.start_hidden;
  if (request.start_layer == 0) {
    h = torch::embedding(embedding_, request.ids.to(device(), torch::kInt64));
    if (spec_.positions == Positions::learned) {
      auto positions = token_positions(request.mask, past + T, T, device());
      if (positions.max().item<int64_t>() >= spec_.max_positions)
        throw Error("sequence of " + std::to_string(past + T) + " tokens is longer than the model's " +
                    std::to_string(spec_.max_positions) + " learned positions");
      h = h + torch::embedding(position_embedding_, positions);
    }
  }
  AttentionInputs here = in;  // `in` on the device of the layer running (a split model moves it with h)
  torch::Device here_device = device();
  for (int64_t i = request.start_layer; i < spec_.num_layers; ++i) {
    const torch::Device& device = layer_devices_[size_t(i)];
    if (h.device() != device) h = h.to(device);
    if (here_device != device) {
      for (torch::Tensor* t : {&here.cos, &here.sin})
        if (t->defined()) *t = t->to(device);
      for (auto& [window, bias] : here.bias) bias = bias.to(device);
      here_device = device;
    }
    if (row_modes_.rows > 0) here.row_short_circuit = row_modes_.short_circuit[size_t(i)], here.row_zeroed = row_modes_.zeroed[size_t(i)];
    h = blocks_[size_t(i)].forward(h, here);
    if (request.layer_outputs) request.layer_outputs->push_back(h);
  }
  if (request.cache) request.cache->length += T;
  if (request.logits_at.defined())
    return logits_from_residual(h.reshape({-1, h.size(-1)}).index_select(0, request.logits_at.to(h.device())));
  if (request.logits_last == 0) return h;
  return logits_from_residual(request.logits_last > 0 && request.logits_last < T ? h.narrow(1, T - request.logits_last, request.logits_last) : h);
}

torch::Tensor CausalLM::logits_from_residual(const torch::Tensor& h) {
  torch::InferenceMode inference;
  auto normed = final_norm_(h.to(final_norm_.weight.device()));
  return torch::linear(normed.to(head_.device()), head_);
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

std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir, const LoadOptions& options) {
  const DecoderSpec spec = read_decoder_spec(ConfigReader(model_dir));
  Checkpoint checkpoint = Checkpoint::open(model_dir);
  WeightLoader weights(checkpoint, options.dtype, place_layers(model_size(spec), options.device, options.devices));
  auto model = std::make_unique<CausalLM>(spec, weights, options);
  checkpoint.check_all_taken(spec.skipped_suffixes);
  return model;
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
