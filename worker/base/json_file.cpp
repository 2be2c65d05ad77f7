#include "worker/base/json_file.h"

#include <fstream>
#include <sstream>

#include "worker/base/error.h"

namespace memsweep {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path + " for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error("error while reading " + path);
  return buffer.str();
}

nlohmann::json parse_json(const std::string& text, const std::string& origin) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(origin + ": not valid JSON at byte " + std::to_string(e.byte) + " (" + e.what() + ")");
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double (found by fuzz_token_rows)
    throw Error(origin + ": not valid JSON (" + e.what() + ")");
  }
}

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }

}  // namespace memsweep
