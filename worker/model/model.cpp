#include "worker/model/model.h"

#include "worker/base/error.h"
#include "worker/model/config_reader.h"
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

void CausalLM::clear_interventions() {
  for (int layer = 0; layer < num_layers(); ++layer) set_attention_mode(layer, AttentionMode::normal);
}

void CausalLM::set_attention_mode(const std::vector<int>& layers, AttentionMode mode) {
  for (int layer : layers) {
    if (layer < 0 || layer >= num_layers())
      throw Error("block " + std::to_string(layer) + " does not exist: the model has " + std::to_string(num_layers()) +
                  " blocks, numbered 0 to " + std::to_string(num_layers() - 1));
    set_attention_mode(layer, mode);
  }
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& model_dir, const LoadOptions& options) {
  ConfigReader config(model_dir);
  const std::string model_type = config.require_string("model_type");
  if (model_type == "gpt_neox") return load_gpt_neox(config, model_dir, options);
  config.fail("model_type", "'" + model_type + "' is not supported (supported: gpt_neox)");
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

}  // namespace memsweep
