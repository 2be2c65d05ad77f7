#include "worker/tokenizer/text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <unordered_map>

#include "worker/base/error.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {
namespace tokenizer_detail {
namespace {

// Length of the well-formed UTF-8 sequence at p[0..n), or 0 with *subpart set to the length of the
// maximal ill-formed subpart (the prefix that could still have started a valid sequence, at least 1).
// The ranges are those of Unicode Table 3-7 (no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence_length(const unsigned char* p, size_t n, size_t* subpart) {
  unsigned char first = p[0];
  if (first < 0x80) return 1;
  size_t continuation = 0;
  unsigned char low = 0x80, high = 0xBF;
  if (first >= 0xC2 && first <= 0xDF) {
    continuation = 1;
  } else if (first == 0xE0) {
    continuation = 2, low = 0xA0;
  } else if ((first >= 0xE1 && first <= 0xEC) || first == 0xEE || first == 0xEF) {
    continuation = 2;
  } else if (first == 0xED) {
    continuation = 2, high = 0x9F;
  } else if (first == 0xF0) {
    continuation = 3, low = 0x90;
  } else if (first >= 0xF1 && first <= 0xF3) {
    continuation = 3;
  } else if (first == 0xF4) {
    continuation = 3, high = 0x8F;
  } else {
    *subpart = 1;
    return 0;
  }
  for (size_t i = 1; i <= continuation; ++i) {
    if (i >= n || p[i] < low || p[i] > high) {
      *subpart = i;
      return 0;
    }
    low = 0x80, high = 0xBF;
  }
  return continuation + 1;
}

bool is_ascii(std::string_view text) {
  for (char c : text)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// GPT-2's bytes_to_unicode(), as code points.
std::array<int32_t, 256> byte_code_points() {
  std::array<int32_t, 256> points{};
  int32_t next_unprintable = 256;
  for (int byte = 0; byte < 256; ++byte) {
    bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
    points[byte] = printable ? byte : next_unprintable++;
  }
  return points;
}

std::string utf8_of(int32_t code_point) {
  utf8proc_uint8_t buffer[4];
  utf8proc_ssize_t length = utf8proc_encode_char(code_point, buffer);
  return std::string(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

// The GPT-2 regex. Oniguruma's Unicode \s (what `tokenizers` uses) matches U+0085 (NEL); PCRE2's UCP
// \s is documented as tab, LF, VT, FF, CR and the Z categories, so NEL is named explicitly to not depend
// on the PCRE2 version (the parity test has texts with NEL).
constexpr const char* kPreTokenizerPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\x{85}\p{L}\p{N}]+|[\s\x{85}]+(?![^\s\x{85}])|[\s\x{85}]+)";

}  // namespace

std::optional<size_t> first_invalid_utf8(std::string_view bytes) {
  auto p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0, subpart = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t length = utf8_sequence_length(p + i, n - i, &subpart);
    if (length == 0) return i;
    i += length;
  }
  return std::nullopt;
}

std::string nfc(std::string_view utf8) {
  if (is_ascii(utf8)) return std::string(utf8);
  utf8proc_uint8_t* mapped = nullptr;
  // An explicit length (no UTF8PROC_NULLTERM) so that NUL characters are kept, not taken as the end.
  utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                                         static_cast<utf8proc_ssize_t>(utf8.size()), &mapped,
                                         static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) throw Error(std::string("NFC normalization failed: ") + utf8proc_errmsg(length));
  std::string result(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
  std::free(mapped);
  return result;
}

const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> symbols = [] {
    std::array<std::string, 256> result;
    std::array<int32_t, 256> points = byte_code_points();
    for (int byte = 0; byte < 256; ++byte) result[byte] = utf8_of(points[byte]);
    return result;
  }();
  return symbols;
}

void append_byte_symbols(std::string_view bytes, std::string& out) {
  const auto& symbols = byte_symbols();
  for (char c : bytes) out += symbols[static_cast<unsigned char>(c)];
}

std::optional<std::string> bytes_of_symbols(std::string_view token) {
  static const std::unordered_map<int32_t, char> byte_of_point = [] {
    std::unordered_map<int32_t, char> result;
    std::array<int32_t, 256> points = byte_code_points();
    for (int byte = 0; byte < 256; ++byte) result[points[byte]] = static_cast<char>(byte);
    return result;
  }();
  std::string bytes;
  auto p = reinterpret_cast<const utf8proc_uint8_t*>(token.data());
  utf8proc_ssize_t remaining = static_cast<utf8proc_ssize_t>(token.size());
  while (remaining > 0) {
    utf8proc_int32_t point = 0;
    utf8proc_ssize_t length = utf8proc_iterate(p, remaining, &point);
    if (length <= 0) return std::nullopt;
    auto found = byte_of_point.find(point);
    if (found == byte_of_point.end()) return std::nullopt;
    bytes += found->second;
    p += length;
    remaining -= length;
  }
  return bytes;
}

struct PreTokenizerRegex::Compiled {
  pcre2_code* code = nullptr;
};

std::string oniguruma_pattern_for_pcre2(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      else if (next == 'S' && !in_class) out += "[^\\s\\x{85}]";
      else if (next == 'S') throw Error("the pre-tokenization pattern \"" + pattern + "\" has \\S inside a character class; memsweep does not translate it");
      else out += c, out += next;
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

PreTokenizerRegex::PreTokenizerRegex() : compiled_(std::make_unique<Compiled>()) { compile(kPreTokenizerPattern); }

PreTokenizerRegex::PreTokenizerRegex(const std::string& oniguruma_pattern, bool keep_gaps)
    : compiled_(std::make_unique<Compiled>()), keep_gaps_(keep_gaps) {
  compile(oniguruma_pattern_for_pcre2(oniguruma_pattern));
}

void PreTokenizerRegex::compile(const std::string& pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &error_code,
                                  &error_offset, nullptr);
  if (!compiled_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    throw Error("cannot compile the pre-tokenization regex \"" + pattern + "\" at offset " + std::to_string(error_offset) + ": " +
                reinterpret_cast<const char*>(message));
  }
  // JIT is an optional speed-up: where it is unavailable PCRE2 interprets the same pattern.
  pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

PreTokenizerRegex::~PreTokenizerRegex() { pcre2_code_free(compiled_->code); }

void PreTokenizerRegex::split(std::string_view utf8, const std::function<void(std::string_view)>& on_word) const {
  struct MatchData {
    pcre2_match_data* data;
    ~MatchData() { pcre2_match_data_free(data); }
  };
  thread_local MatchData match{pcre2_match_data_create(1, nullptr)};
  auto subject = reinterpret_cast<PCRE2_SPTR>(utf8.data());
  size_t offset = 0, start = 0;  // the end of the last word; where the next search starts
  while (start < utf8.size()) {
    // The caller checked the UTF-8 once for the whole text.
    int result = pcre2_match(compiled_->code, subject, utf8.size(), start, PCRE2_NO_UTF_CHECK, match.data, nullptr);
    if (result == PCRE2_ERROR_NOMATCH) break;
    if (result < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(result, message, sizeof message);
      throw Error(std::string("pre-tokenization regex failed: ") + reinterpret_cast<const char*>(message));
    }
    PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.data);
    if (span[1] == span[0]) {  // an empty match (a tokenizer.json's pattern may allow one) makes no word
      start = span[0] + 1;
      while (start < utf8.size() && (static_cast<unsigned char>(utf8[start]) & 0xC0) == 0x80) ++start;
      continue;
    }
    if (span[0] > offset && keep_gaps_) on_word(utf8.substr(offset, span[0] - offset));
    on_word(utf8.substr(span[0], span[1] - span[0]));
    offset = start = span[1];
  }
  if (offset < utf8.size() && keep_gaps_) on_word(utf8.substr(offset));
}

}  // namespace tokenizer_detail

std::string replace_invalid_utf8(std::string_view bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  auto p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0, subpart = 0;
  std::string result;
  result.reserve(n);
  while (i < n) {
    size_t length = tokenizer_detail::utf8_sequence_length(p + i, n - i, &subpart);
    if (length == 0) {
      result += kReplacement;
      i += subpart;
    } else {
      result.append(bytes.data() + i, length);
      i += length;
    }
  }
  return result;
}

}  // namespace memsweep
