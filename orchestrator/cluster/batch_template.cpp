#include "orchestrator/cluster/batch_template.h"

#include <sstream>

#include "worker/base/error.h"

namespace memsweep {

namespace {

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

std::string known_names(const TemplateValues& values) {
  std::string names;
  for (const auto& [name, value] : values) names += (names.empty() ? "" : ", ") + name;
  return names;
}

}  // namespace

std::string render_batch_template(const std::string& text, const std::string& origin, const TemplateValues& values) {
  std::istringstream lines(text);
  std::string line, out;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    std::string rendered;
    bool any_placeholder = false, any_value = false;
    size_t at = 0;
    for (;;) {
      const size_t open = line.find("{{", at);
      if (open == std::string::npos) break;
      const size_t close = line.find("}}", open + 2);
      if (close == std::string::npos)
        throw Error(origin + ":" + std::to_string(number) + ": '{{' without a closing '}}'");
      const std::string name = trim(line.substr(open + 2, close - open - 2));
      const auto found = values.find(name);
      if (found == values.end())
        throw Error(origin + ":" + std::to_string(number) + ": unknown placeholder '{{" + name + "}}' (known: " +
                    known_names(values) + ")");
      rendered += line.substr(at, open - at) + found->second;
      any_placeholder = true;
      any_value = any_value || !found->second.empty();
      at = close + 2;
    }
    rendered += line.substr(at);
    // An #SBATCH line whose values are all empty (an unset --partition), or a line that was only empty placeholders
    // (no --sbatch lines), is left out.
    if (any_placeholder && !any_value && (trim(line).rfind("#SBATCH", 0) == 0 || trim(rendered).empty())) continue;
    out += rendered + "\n";
  }
  return out;
}

}  // namespace memsweep
