#pragma once
// The few Python str operations the harness's prompts use, on UTF-8 text, with Python's semantics: what
// str.isspace() calls whitespace, len() in code points, capitalize(), and the HellaSwag preprocessing
// (lm_eval/tasks/hellaswag/utils.py). Also the templates of the generic multiple-choice task: "{{field}}" and
// "{{field.sub}}" substitutions only, so that such a template renders the same under Jinja.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace memsweep {

// Python's str.strip() / lstrip() / rstrip() without arguments (Unicode whitespace, not only ASCII).
std::string python_strip(std::string_view text);
std::string python_lstrip(std::string_view text);
std::string python_rstrip(std::string_view text);

// len(text) in Python: code points. Text is valid UTF-8 (as JSON strings are).
int64_t code_point_length(std::string_view text);

// str.capitalize(): the first character title-cased, the rest lower-cased (simple case mappings of utf8proc;
// Python also applies the few special multi-character mappings, e.g. 'ß'.upper(), which this does not).
std::string python_capitalize(std::string_view text);

// lm_eval's hellaswag preprocess(): strip, " [title]" -> ". ", remove "[...]" (non-greedy, within a line),
// "  " -> " " (one pass, as str.replace).
std::string hellaswag_preprocess(std::string_view text);

// Renders "{{name}}" / "{{a.b}}" (spaces inside the braces allowed) with the document's fields: strings as they
// are, integers in decimal. Error (prefixed by `where`) for a missing field, another value type or a "{{"
// that is not a plain field reference.
std::string render_template(const std::string& template_text, const nlohmann::json& document, const std::string& where);

// The value at a dotted path ("choices.text"), or nullptr when a step is missing.
const nlohmann::json* field_at(const nlohmann::json& document, const std::string& dotted_path);

}  // namespace memsweep
