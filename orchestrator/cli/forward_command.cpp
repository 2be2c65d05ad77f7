// memsweep forward: the inspection command. Runs a checkpoint on rows of token ids, with any blocks
// short-circuited or zeroed, and writes each row's logits to a safetensors file.
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "orchestrator/cli/model_options.h"
#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/checkpoint/safetensors.h"
#include "worker/model/model.h"

namespace po = boost::program_options;

namespace memsweep {

int forward_command(const Arguments& args) {
  const CommandSpec spec{
      "forward", "--model DIR --tokens FILE.json --out FILE.safetensors [options]",
      "Runs the checkpoint in DIR (config.json + model.safetensors or pytorch_model.bin, or their sharded forms\n"
      "with an .index.json) on every row of FILE.json, a JSON array of token-id arrays of any lengths,\n"
      "and writes one float32 tensor 'logits.<i>' of shape [T_i, V] per row i to the output safetensors file.\n"
      "Rows are batched with left padding; positions come from the padding mask, so a row's logits do not depend\n"
      "on the batch it ran in. Blocks are numbered from 0; lists look like 3,7-9.\n"
      "With --timing N the rows run N times (after one warm-up pass) and a JSON line with each pass's seconds\n"
      "(device synchronized) is printed instead of writing logits (bench/forward_throughput.py uses it)."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string tokens_path, out_path;
  int batch_size = 1, timing = 0;
  options.add_options()
      ("tokens", po::value(&tokens_path)->required(), "JSON array of token-id arrays")
      ("out", po::value(&out_path), "output safetensors file (required unless --timing)")
      ("batch-size", po::value(&batch_size)->default_value(1), "rows per forward pass")
      ("timing", po::value(&timing)->default_value(0), "run the rows this many times and print the seconds of each pass");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (batch_size < 1) throw Error("--batch-size must be at least 1");
  if (timing < 0) throw Error("--timing must be 0 or more");
  if (timing == 0 && out_path.empty()) throw Error("--out is required (or --timing N)");

  auto model = load_model_with_interventions(model_options);
  const auto rows = read_token_rows(tokens_path, model->vocab_size());
  if (timing > 0) {
    torch::InferenceMode inference;
    auto synchronize = [&] {
      for (const torch::Device& device : model->layer_devices())
        if (device.is_cuda()) torch::cuda::synchronize(device.index());
    };
    nlohmann::json seconds = nlohmann::json::array();
    for (int pass = -1; pass < timing; ++pass) {  // pass -1: warm-up
      synchronize();
      const auto start = std::chrono::steady_clock::now();
      for (size_t first = 0; first < rows.size(); first += size_t(batch_size)) {
        PaddedBatch batch = left_pad(rows, first, std::min(rows.size() - first, size_t(batch_size)));
        model->forward(ForwardRequest(batch.ids, batch.padded ? batch.mask : torch::Tensor()));
      }
      synchronize();
      if (pass >= 0) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::cout << nlohmann::json{{"seconds", seconds}, {"rows", rows.size()}, {"batch_size", batch_size}}.dump() << std::endl;
    return 0;
  }
  std::vector<torch::Tensor> logits(rows.size());
  for (size_t first = 0; first < rows.size(); first += size_t(batch_size)) {
    const size_t count = std::min(rows.size() - first, size_t(batch_size));
    PaddedBatch batch = left_pad(rows, first, count);
    auto out = model->forward(ForwardRequest(batch.ids, batch.padded ? batch.mask : torch::Tensor())).to(torch::kCPU, torch::kFloat32);
    for (size_t i = 0; i < count; ++i) {
      const int64_t size = int64_t(rows[first + i].size());
      logits[first + i] = out[int64_t(i)].narrow(0, batch.length - size, size).contiguous();
    }
  }

  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < rows.size(); ++i) {
    tensors.push_back({"logits." + std::to_string(i), DType::F32, logits[i].sizes().vec(), logits[i].data_ptr()});
  }
  write_safetensors(out_path, tensors, {{"model", model_options.model_dir}});
  log_info("wrote logits of " + std::to_string(rows.size()) + " rows to " + out_path);
  return 0;
}

}  // namespace memsweep
