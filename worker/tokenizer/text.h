#pragma once
// Text-level steps of byte-level BPE, internal to memsweep_tokenizer: UTF-8 checking, NFC (utf8proc),
// the GPT-2 pre-tokenization regex (PCRE2) and the GPT-2 byte <-> symbol map.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace memsweep::tokenizer_detail {

// Byte offset of the first ill-formed UTF-8 sequence, or nullopt when `bytes` is well-formed.
std::optional<size_t> first_invalid_utf8(std::string_view bytes);

// Unicode Normalization Form C of well-formed UTF-8.
std::string nfc(std::string_view utf8);

// The GPT-2 map from each byte to one printable code point (UTF-8 encoded): bytes that are printable
// Latin-1 map to themselves, the others to U+0100 upwards in byte order.
const std::array<std::string, 256>& byte_symbols();
// Appends the byte-level spelling of `bytes` (each byte replaced by its symbol).
void append_byte_symbols(std::string_view bytes, std::string& out);
// Bytes spelled by a token when every character of it is a byte symbol; nullopt otherwise.
std::optional<std::string> bytes_of_symbols(std::string_view token);

// A pre-tokenization regex compiled with PCRE2 in UTF + UCP mode (Unicode \s, \p{L}, \p{N}, as Oniguruma gives
// `tokenizers`): the GPT-2 one (ByteLevel with use_regex), or a tokenizer.json's Split pattern (Llama 3, Qwen2,
// OLMo 2), written for Oniguruma and translated (oniguruma_pattern_for_pcre2). Splits like `tokenizers`'
// Split(..., Isolated): every match is a word and so is every non-matching gap between matches; with
// `keep_gaps` false like Split(..., Removed, invert: true): only the matches.
class PreTokenizerRegex {
 public:
  PreTokenizerRegex();  // GPT-2's
  // Error naming the pattern when PCRE2 cannot compile it or it uses what the translation does not handle.
  PreTokenizerRegex(const std::string& oniguruma_pattern, bool keep_gaps);
  ~PreTokenizerRegex();
  PreTokenizerRegex(const PreTokenizerRegex&) = delete;
  PreTokenizerRegex& operator=(const PreTokenizerRegex&) = delete;
  // REQUIRES: `utf8` is well-formed UTF-8. Calls on_word for each word in order.
  void split(std::string_view utf8, const std::function<void(std::string_view)>& on_word) const;

 private:
  void compile(const std::string& pcre2_pattern);
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
  bool keep_gaps_ = true;
};

// Oniguruma's Unicode \s matches U+0085 (NEL), PCRE2's does not: \s and \S become classes that name it. Error for
// \S inside a character class (not needed by any known tokenizer).
std::string oniguruma_pattern_for_pcre2(const std::string& pattern);

}  // namespace memsweep::tokenizer_detail
