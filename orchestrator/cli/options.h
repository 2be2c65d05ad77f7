#pragma once
// Shared handling of a subcommand's options (Boost.Program_options): --help text, unknown options and
// missing values become memsweep::Error with the command's usage.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace memsweep {

struct CommandSpec {
  std::string name;         // "forward"
  std::string synopsis;     // one line after "usage: memsweep forward"
  std::string description;  // paragraphs shown by --help
};

// Parses args into a variables_map. Returns false when --help was asked (help already printed to stdout).
bool parse_command_line(const CommandSpec& spec, boost::program_options::options_description& options,
                        const std::vector<std::string>& args, boost::program_options::variables_map& values,
                        const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace memsweep
