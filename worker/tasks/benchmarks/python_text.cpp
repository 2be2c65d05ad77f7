#include "worker/tasks/benchmarks/python_text.h"

#include <utf8proc.h>

#include "worker/base/error.h"

namespace memsweep {
namespace {

// Decodes the code point at text[at] and its byte length (text is valid UTF-8).
char32_t decode_at(std::string_view text, size_t at, size_t* length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  size_t n = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  if (at + n > text.size()) n = 1;
  char32_t c = n == 1 ? lead : n == 2 ? lead & 0x1F : n == 3 ? lead & 0x0F : lead & 0x07;
  for (size_t i = 1; i < n; ++i) c = (c << 6) | (byte(at + i) & 0x3F);
  *length = n;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  utf8proc_uint8_t buffer[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buffer);
  out.append(reinterpret_cast<const char*>(buffer), size_t(n));
}

// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
bool is_python_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x1F:
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

size_t leading_space_bytes(std::string_view text) {
  size_t at = 0, n = 0;
  while (at < text.size() && is_python_space(decode_at(text, at, &n))) at += n;
  return at;
}

// The byte offset where the trailing whitespace starts.
size_t trailing_space_start(std::string_view text) {
  size_t end = 0, at = 0, n = 0;
  while (at < text.size()) {
    const bool space = is_python_space(decode_at(text, at, &n));
    at += n;
    if (!space) end = at;
  }
  return end;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  std::string out;
  size_t at = 0;
  for (size_t hit; (hit = text.find(from, at)) != std::string::npos; at = hit + from.size()) out.append(text, at, hit - at).append(to);
  return out.append(text, at, std::string::npos);
}

}  // namespace

std::string python_lstrip(std::string_view text) { return std::string(text.substr(leading_space_bytes(text))); }
std::string python_rstrip(std::string_view text) { return std::string(text.substr(0, trailing_space_start(text))); }
std::string python_strip(std::string_view text) { return python_lstrip(python_rstrip(text)); }

int64_t code_point_length(std::string_view text) {
  int64_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

std::string python_capitalize(std::string_view text) {
  std::string out;
  size_t n = 0;
  for (size_t at = 0; at < text.size(); at += n) {
    const char32_t c = decode_at(text, at, &n);
    const auto mapped = at == 0 ? utf8proc_totitle(static_cast<utf8proc_int32_t>(c)) : utf8proc_tolower(static_cast<utf8proc_int32_t>(c));
    append_utf8(out, static_cast<char32_t>(mapped));
  }
  return out;
}

std::string hellaswag_preprocess(std::string_view input) {
  std::string text = replace_all(python_strip(input), " [title]", ". ");
  // re.sub("\\[.*?\\]", "", text): '.' does not match a newline, so a '[' whose ']' is only past a newline stays.
  std::string removed;
  for (size_t at = 0; at < text.size();) {
    if (text[at] == '[') {
      const size_t close = text.find_first_of("]\n", at + 1);
      if (close != std::string::npos && text[close] == ']') {
        at = close + 1;
        continue;
      }
    }
    removed += text[at++];
  }
  return replace_all(removed, "  ", " ");
}

const nlohmann::json* field_at(const nlohmann::json& document, const std::string& dotted_path) {
  const nlohmann::json* value = &document;
  size_t at = 0;
  while (true) {
    const size_t dot = dotted_path.find('.', at);
    const std::string key = dotted_path.substr(at, dot == std::string::npos ? std::string::npos : dot - at);
    if (!value->is_object() || !value->contains(key)) return nullptr;
    value = &(*value)[key];
    if (dot == std::string::npos) return value;
    at = dot + 1;
  }
}

std::string render_template(const std::string& template_text, const nlohmann::json& document, const std::string& where) {
  std::string out;
  size_t at = 0;
  for (size_t open; (open = template_text.find("{{", at)) != std::string::npos;) {
    out.append(template_text, at, open - at);
    const size_t close = template_text.find("}}", open + 2);
    if (close == std::string::npos) throw Error(where + ": template '" + template_text + "' has a '{{' without '}}'");
    const std::string name = python_strip(std::string_view(template_text).substr(open + 2, close - open - 2));
    if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != std::string::npos)
      throw Error(where + ": template reference '{{" + template_text.substr(open + 2, close - open - 2) +
                  "}}' is not a field name (only {{field}} and {{field.sub}} are supported)");
    const nlohmann::json* value = field_at(document, name);
    if (!value) throw Error(where + ": missing field '" + name + "' (used by the template)");
    if (value->is_string()) out += value->get<std::string>();
    else if (value->is_number_integer()) out += value->dump();
    else throw Error(where + ": field '" + name + "' must be a string or an integer, found " + value->dump());
    at = close + 2;
  }
  return out.append(template_text, at, std::string::npos);
}

}  // namespace memsweep
