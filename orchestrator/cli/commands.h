#pragma once
// Each subcommand of the memsweep binary: takes its arguments (without the program and command name),
// prints its result to stdout, returns the process exit code. Errors are thrown as memsweep::Error.
#include <string>
#include <vector>

namespace memsweep {

using Arguments = std::vector<std::string>;

int forward_command(const Arguments& args);
int info_command(const Arguments& args);
int generate_command(const Arguments& args);
int tokenize_command(const Arguments& args);
int eval_command(const Arguments& args);
int select_memorized_command(const Arguments& args);
int run_command(const Arguments& args);
int plan_command(const Arguments& args);
int status_command(const Arguments& args);
int report_command(const Arguments& args);
int submit_command(const Arguments& args);

}  // namespace memsweep
