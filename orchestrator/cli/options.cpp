#include "orchestrator/cli/options.h"

#include <iostream>
#include <sstream>

#include "worker/base/error.h"

namespace po = boost::program_options;

namespace memsweep {

bool parse_command_line(const CommandSpec& spec, po::options_description& options, const std::vector<std::string>& args,
                        po::variables_map& values, const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help and exit");
  auto usage = [&] {
    std::ostringstream text;
    text << "usage: memsweep " << spec.name << " " << spec.synopsis << "\n\n" << spec.description << "\n\n" << options;
    return text.str();
  };
  try {
    po::command_line_parser parser(args);
    parser.options(options);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), values);
    if (values.count("help")) {
      std::cout << usage();
      return false;
    }
    po::notify(values);
  } catch (const po::error& e) {
    throw Error("memsweep " + spec.name + ": " + e.what() + "\n\n" + usage());
  }
  return true;
}

}  // namespace memsweep
