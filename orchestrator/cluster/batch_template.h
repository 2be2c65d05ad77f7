#pragma once
// SLURM batch scripts from user-editable templates (cluster/templates/*.sbatch). A template is a bash script
// with `{{name}}` placeholders, replaced by values `memsweep submit` computes. Rules, kept simple on purpose:
//   - `{{name}}` (spaces inside the braces allowed) is replaced by the value; nothing else is special;
//   - a name that is not a known value is an Error naming the template file, line and the known names;
//   - an `#SBATCH` line whose placeholders all have empty values is left out (an optional --partition or
//     --account left unset disappears instead of reaching sbatch as `--partition=`).
// libtorch-free, so unit tests link it alone.
#include <map>
#include <string>

namespace memsweep {

using TemplateValues = std::map<std::string, std::string>;

// `origin` names the template in errors ("cluster/templates/cpu_test.sbatch").
std::string render_batch_template(const std::string& text, const std::string& origin, const TemplateValues& values);

}  // namespace memsweep
