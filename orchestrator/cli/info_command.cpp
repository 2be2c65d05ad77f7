// memsweep info: what this build runs on — libtorch version and build settings (BLAS among them), devices,
// threads — and a measured fp32 matmul rate, the quickest way to spot a libtorch linked to a slow BLAS.
#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>

#include "memsweep_version.h"
#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"

namespace po = boost::program_options;

namespace memsweep {

int info_command(const Arguments& args) {
  const CommandSpec spec{"info", "[--matmul-size N]",
                         "Prints memsweep's and libtorch's versions, libtorch's build configuration (look for the BLAS\n"
                         "line), the devices and threads, and the measured float32 matmul rate on the CPU in GFLOP/s.\n"
                         "On a current x86 core an optimized BLAS gives tens of GFLOP/s per core; a reference BLAS\n"
                         "gives a few GFLOP/s in all, and memsweep then runs tens of times slower."};
  po::options_description options("options");
  int64_t size = 2048;
  options.add_options()("matmul-size", po::value(&size)->default_value(2048), "side of the square matrices to multiply");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;

  std::cout << "memsweep " << MEMSWEEP_VERSION << " (" << MEMSWEEP_GIT_COMMIT << ")\n"
            << "libtorch " << TORCH_VERSION << "\n"
            << "CUDA available: " << (torch::cuda::is_available() ? "yes, " + std::to_string(torch::cuda::device_count()) + " device(s)" : std::string("no")) << "\n"
            << "intra-op threads: " << at::get_num_threads() << "\n\n"
            << "libtorch build configuration:\n" << at::show_config() << "\n";
  torch::InferenceMode inference;
  auto a = torch::randn({size, size}), b = torch::randn({size, size});
  torch::mm(a, b);  // warm-up
  const int repeats = 5;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) torch::mm(a, b);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
  std::cout << "float32 matmul " << size << "x" << size << ": " << 2.0 * double(size) * size * size / seconds / 1e9
            << " GFLOP/s\n";
  return 0;
}

}  // namespace memsweep
