#pragma once
// Reading JSON files with errors that name the file and the position of a parse failure.
#include <nlohmann/json.hpp>
#include <string>

namespace memsweep {

// Whole file as bytes; throws Error naming the path when it cannot be read.
std::string read_file(const std::string& path);
// Parses the file; a syntax error names the path and the byte offset.
nlohmann::json read_json_file(const std::string& path);
// Parses text that came from `origin` (a path, or "path, line N"), same error style.
nlohmann::json parse_json(const std::string& text, const std::string& origin);

}  // namespace memsweep
