// The memsweep binary: one subcommand per task. Errors are caught here once, printed, exit code 1.
#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "memsweep_version.h"
#include "orchestrator/cli/commands.h"
#include "worker/base/error.h"
#include "worker/base/log.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const memsweep::Arguments&);
  const char* summary;
};

const Command kCommands[] = {
    {"eval", memsweep::eval_command, "evaluate one model x intervention x dataset and print its metrics"},
    {"forward", memsweep::forward_command, "run a checkpoint on token ids and write the logits (inspection)"},
    {"generate", memsweep::generate_command, "greedy continuation of token-id prompts (KV cache), printed as JSON"},
    {"info", memsweep::info_command, "libtorch version, BLAS, devices, threads and a measured matmul rate"},
    {"plan", memsweep::plan_command, "check a study file and print its grid and what its store already holds"},
    {"report", memsweep::report_command, "a study's store as report.md, CSV files and figures (PNG, SVG)"},
    {"run", memsweep::run_command, "run a study (alone or under mpirun), resuming what its store holds"},
    {"select-memorized", memsweep::select_memorized_command, "keep the windows of a token corpus the model reproduces exactly"},
    {"status", memsweep::status_command, "progress of a study's store: per model and dataset, failures, rate, ETA"},
    {"submit", memsweep::submit_command, "write a SLURM batch script for a study from cluster/templates/ and sbatch it"},
    {"tokenize", memsweep::tokenize_command, "encode text to token ids, or decode ids, with a model's tokenizer"},
};

void print_usage(std::ostream& out) {
  out << "memsweep " << MEMSWEEP_VERSION << " (" << MEMSWEEP_GIT_COMMIT << ")\n"
      << "Which transformer blocks make a language model memorize: short-circuit attention, measure.\n\n"
      << "usage: memsweep COMMAND [options]   (memsweep COMMAND --help for a command's options)\n\ncommands:\n";
  for (const Command& c : kCommands) out << "  " << c.name << std::string(std::max<size_t>(2, 18 - std::strlen(c.name)), ' ') << c.summary << "\n";
}

// A worker frees and allocates its large temporaries (logits, attention scores: tens to hundreds of MB) again for
// every batch and configuration. glibc maps each allocation above 32 MB afresh and the kernel zeroes its pages again
// every time: a CPU sweep spent a tenth of its time there (PIQA sweep, pythia-70m shape: 16.2 s -> 14.8 s, system
// time 1.9 -> 0.4 s). Below 1 GB they now come from the heap, which keeps up to 1 GB freed for the next batch.
void keep_large_allocations() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  keep_large_allocations();
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version") {
    std::cout << "memsweep " << MEMSWEEP_VERSION << " (" << MEMSWEEP_GIT_COMMIT << ")\n";
    return 0;
  }
  for (const Command& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(memsweep::Arguments(argv + 2, argv + argc));
    } catch (const memsweep::Error& e) {
      memsweep::log_error(e.what());
    } catch (const std::exception& e) {
      memsweep::log_error(std::string("internal error: ") + e.what());
    }
    return 1;
  }
  std::cerr << "memsweep: unknown command '" << name << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
