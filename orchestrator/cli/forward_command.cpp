// memsweep forward: the inspection command. Runs a checkpoint on rows of token ids, with any blocks
// short-circuited or zeroed, and writes each row's logits to a safetensors file.
#include <torch/torch.h>

#include <iostream>

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
      "on the batch it ran in. Blocks are numbered from 0; lists look like 3,7-9."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string tokens_path, out_path;
  int batch_size = 1;
  options.add_options()
      ("tokens", po::value(&tokens_path)->required(), "JSON array of token-id arrays")
      ("out", po::value(&out_path)->required(), "output safetensors file")
      ("batch-size", po::value(&batch_size)->default_value(1), "rows per forward pass");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (batch_size < 1) throw Error("--batch-size must be at least 1");

  auto model = load_model_with_interventions(model_options);
  const auto rows = read_token_rows(tokens_path, model->vocab_size());
  std::vector<torch::Tensor> logits(rows.size());
  for (size_t first = 0; first < rows.size(); first += size_t(batch_size)) {
    const size_t count = std::min(rows.size() - first, size_t(batch_size));
    PaddedBatch batch = left_pad(rows, first, count);
    auto out = model->forward(batch.ids, batch.padded ? batch.mask : torch::Tensor()).to(torch::kCPU, torch::kFloat32);
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
