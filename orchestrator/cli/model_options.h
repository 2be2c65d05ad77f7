#pragma once
// Options every model-running command shares (--model, --dtype, --device, --short-circuit, --zero-attention),
// and reading token-id rows from JSON.
#include <boost/program_options.hpp>
#include <memory>
#include <string>
#include <vector>

#include "worker/model/model.h"

namespace memsweep {

struct ModelOptions {
  std::string model_dir, dtype, device, short_circuit, zero_attention, attention;
  int devices = 1;
};
void add_model_options(boost::program_options::options_description& options, ModelOptions& values);
// Loads the model and sets the interventions; Error for a block out of range or listed under both kinds. Sets the
// intra-op threads first (set_intra_op_threads(1)).
std::unique_ptr<CausalLM> load_model_with_interventions(const ModelOptions& options);

// libtorch's intra-op threads for a process that is one of `workers` model-running processes on its node: the
// usable cores (the affinity mask a SLURM allocation or taskset narrows) shared among them, OMP_NUM_THREADS when set.
// Logged; returns the count. Every command that runs a model (eval, generate, forward, select-memorized, run's
// workers) chooses this way.
int set_intra_op_threads(int workers);

// A JSON array of non-empty arrays of ids below vocab_size; errors name the file, row and position.
std::vector<std::vector<int64_t>> read_token_rows(const std::string& path, int64_t vocab_size);

}  // namespace memsweep
