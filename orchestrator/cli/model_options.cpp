#include "orchestrator/cli/model_options.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "orchestrator/worker_loop/device_choice.h"
#include "worker/base/log.h"

#include "worker/base/block_list.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"

namespace po = boost::program_options;

namespace memsweep {

void add_model_options(po::options_description& options, ModelOptions& values) {
  options.add_options()
      ("model", po::value(&values.model_dir)->required(), "model directory (Hugging Face layout)")
      ("short-circuit", po::value(&values.short_circuit), "blocks whose attention is the identity (each token attends to itself), e.g. 3,7-9")
      ("zero-attention", po::value(&values.zero_attention), "blocks whose attention sublayer outputs zero")
      ("dtype", po::value(&values.dtype)->default_value("float32"), "float32, float16 or bfloat16 (weights and activations)")
      ("device", po::value(&values.device)->default_value("cpu"), "cpu, cuda or cuda:N")
      ("devices", po::value(&values.devices)->default_value(1),
       "split the layers over this many devices from --device on (cuda:N to cuda:N+K-1; with cpu, K placeholders "
       "that are all the CPU), for a model that does not fit one")
      ("attention", po::value(&values.attention)->default_value("fused"),
       "GPT-NeoX attention: fused (libtorch's scaled_dot_product_attention) or eager (the scores materialised)");
}

namespace {
// The cores this process may run on (a SLURM allocation narrows the affinity mask).
int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}
}  // namespace

int set_intra_op_threads(int workers) {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const int threads = intra_op_threads(usable_cores(), workers, omp);
  at::set_num_threads(threads);
  log_info(std::to_string(threads) + " intra-op thread(s) (" + std::to_string(usable_cores()) + " usable cores, " +
           std::to_string(workers) + " model process(es) on this node" + (omp && *omp ? std::string(", OMP_NUM_THREADS=") + omp : "") +
           ")");
  return threads;
}

std::unique_ptr<CausalLM> load_model_with_interventions(const ModelOptions& options) {
  set_intra_op_threads(1);
  if (options.attention != "fused" && options.attention != "eager")
    throw Error("--attention must be fused or eager, not '" + options.attention + "'");
  LoadOptions load{parse_dtype(options.dtype), parse_device(options.device), options.attention == "fused", options.devices};
  auto model = load_causal_lm(options.model_dir, load);
  model->set_attention_mode(parse_block_list(options.short_circuit, model->num_layers()), AttentionMode::short_circuit);
  auto zeroed = parse_block_list(options.zero_attention, model->num_layers());
  for (int block : zeroed)
    if (model->attention_mode(block) != AttentionMode::normal)
      throw Error("block " + std::to_string(block) + " is listed in both --short-circuit and --zero-attention");
  model->set_attention_mode(zeroed, AttentionMode::zero_attention);
  return model;
}

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

}  // namespace memsweep
