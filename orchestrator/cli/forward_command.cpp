// memsweep forward: the inspection command. Runs a checkpoint on rows of token ids, with any blocks
// short-circuited or zeroed, and writes each row's logits to a safetensors file.
#include <torch/torch.h>

#include <iostream>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "worker/base/block_list.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/base/log.h"
#include "worker/checkpoint/safetensors.h"
#include "worker/model/model.h"

namespace po = boost::program_options;

namespace memsweep {
namespace {

std::vector<std::vector<int64_t>> read_token_rows(const std::string& path, int64_t vocab_size) {
  nlohmann::json json = read_json_file(path);
  if (!json.is_array()) throw Error(path + ": expected a JSON array of token-id arrays");
  std::vector<std::vector<int64_t>> rows;
  for (size_t i = 0; i < json.size(); ++i) {
    const auto& row = json[i];
    if (!row.is_array()) throw Error(path + ": row " + std::to_string(i) + " is not an array of token ids");
    if (row.empty()) throw Error(path + ": row " + std::to_string(i) + " is empty");
    std::vector<int64_t> ids;
    for (size_t t = 0; t < row.size(); ++t) {
      if (!row[t].is_number_integer() || row[t].get<int64_t>() < 0 || row[t].get<int64_t>() >= vocab_size)
        throw Error(path + ": row " + std::to_string(i) + ", position " + std::to_string(t) + ": " + row[t].dump() +
                    " is not a token id of this model (0 to " + std::to_string(vocab_size - 1) + ")");
      ids.push_back(row[t].get<int64_t>());
    }
    rows.push_back(std::move(ids));
  }
  return rows;
}

}  // namespace

int forward_command(const Arguments& args) {
  const CommandSpec spec{
      "forward", "--model DIR --tokens FILE.json --out FILE.safetensors [options]",
      "Runs the checkpoint in DIR (config.json + model.safetensors or pytorch_model.bin, or their sharded forms\n"
      "with an .index.json) on every row of FILE.json, a JSON array of token-id arrays of any lengths,\n"
      "and writes one float32 tensor 'logits.<i>' of shape [T_i, V] per row i to the output safetensors file.\n"
      "Rows are batched with left padding; positions come from the padding mask, so a row's logits do not depend\n"
      "on the batch it ran in. Blocks are numbered from 0; lists look like 3,7-9."};
  po::options_description options("options");
  std::string model_dir, tokens_path, out_path, short_circuit, zero_attention, dtype_name, device_name;
  int batch_size = 1;
  options.add_options()
      ("model", po::value(&model_dir)->required(), "model directory (Hugging Face layout)")
      ("tokens", po::value(&tokens_path)->required(), "JSON array of token-id arrays")
      ("out", po::value(&out_path)->required(), "output safetensors file")
      ("short-circuit", po::value(&short_circuit), "blocks whose attention is the identity (each token attends to itself)")
      ("zero-attention", po::value(&zero_attention), "blocks whose attention sublayer outputs zero")
      ("dtype", po::value(&dtype_name)->default_value("float32"), "float32, float16 or bfloat16")
      ("device", po::value(&device_name)->default_value("cpu"), "cpu, cuda or cuda:N")
      ("batch-size", po::value(&batch_size)->default_value(1), "rows per forward pass");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (batch_size < 1) throw Error("--batch-size must be at least 1");

  LoadOptions load{parse_dtype(dtype_name), parse_device(device_name)};
  auto model = load_causal_lm(model_dir, load);
  model->set_attention_mode(parse_block_list(short_circuit, model->num_layers()), AttentionMode::short_circuit);
  auto zeroed = parse_block_list(zero_attention, model->num_layers());
  for (int block : zeroed)
    if (model->attention_mode(block) != AttentionMode::normal)
      throw Error("block " + std::to_string(block) + " is listed in both --short-circuit and --zero-attention");
  model->set_attention_mode(zeroed, AttentionMode::zero_attention);

  const auto rows = read_token_rows(tokens_path, model->vocab_size());
  std::vector<torch::Tensor> logits(rows.size());
  for (size_t first = 0; first < rows.size(); first += size_t(batch_size)) {
    const size_t count = std::min(rows.size() - first, size_t(batch_size));
    int64_t length = 0;
    for (size_t i = 0; i < count; ++i) length = std::max<int64_t>(length, int64_t(rows[first + i].size()));
    auto ids = torch::zeros({int64_t(count), length}, torch::kInt64);
    auto mask = torch::zeros({int64_t(count), length}, torch::kInt64);
    bool padded = false;
    for (size_t i = 0; i < count; ++i) {
      const auto& row = rows[first + i];
      const int64_t pad = length - int64_t(row.size());
      padded |= pad > 0;
      ids[int64_t(i)].narrow(0, pad, int64_t(row.size())).copy_(torch::tensor(row, torch::kInt64));
      mask[int64_t(i)].narrow(0, pad, int64_t(row.size())).fill_(1);
    }
    auto out = model->forward(ids, padded ? mask : torch::Tensor()).to(torch::kCPU, torch::kFloat32);
    for (size_t i = 0; i < count; ++i) {
      const int64_t size = int64_t(rows[first + i].size());
      logits[first + i] = out[int64_t(i)].narrow(0, length - size, size).contiguous();
    }
  }

  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < rows.size(); ++i) {
    tensors.push_back({"logits." + std::to_string(i), DType::F32, logits[i].sizes().vec(), logits[i].data_ptr()});
  }
  write_safetensors(out_path, tensors, {{"model", model_dir}});
  log_info("wrote logits of " + std::to_string(rows.size()) + " rows to " + out_path);
  return 0;
}

}  // namespace memsweep
