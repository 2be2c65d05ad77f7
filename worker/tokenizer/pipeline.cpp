#include "worker/tokenizer/pipeline.h"

#include <optional>

#include "worker/tokenizer/text.h"

namespace memsweep::tokenizer_detail {
namespace {

constexpr char kReplacementCharacter[] = "\xEF\xBF\xBD";  // U+FFFD

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a token spelled <0xNN>, as `tokenizers`' ByteFallback reads it (Rust's u8::from_str_radix of the two
// characters: hex digits of either case, or '+' and one digit).
std::optional<unsigned char> fallback_byte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  const int high = token[3] == '+' ? 0 : hex_digit(token[3]), low = hex_digit(token[4]);
  if (high < 0 || low < 0) return std::nullopt;
  return static_cast<unsigned char>(high * 16 + low);
}

std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  size_t count = 0;
  auto flush = [&] {
    if (count == 0) return;
    if (first_invalid_utf8(bytes)) out.insert(out.end(), count, kReplacementCharacter);
    else out.push_back(bytes);
    bytes.clear();
    count = 0;
  };
  for (std::string& token : tokens) {
    if (auto byte = fallback_byte(token)) {
      bytes += static_cast<char>(*byte);
      ++count;
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

std::string strip(const std::string& token, const std::string& character, size_t start, size_t stop) {
  size_t begin = 0, end = token.size();
  for (size_t i = 0; i < start && token.compare(begin, character.size(), character) == 0 && begin < end; ++i)
    begin += character.size();
  for (size_t i = 0; i < stop && end - begin >= character.size() &&
                     token.compare(end - character.size(), character.size(), character) == 0; ++i)
    end -= character.size();
  return token.substr(begin, end - begin);
}

}  // namespace

std::string replace_all(std::string_view text, const std::string& pattern, const std::string& content) {
  std::string out;
  size_t from = 0;
  for (size_t at = text.find(pattern); at != std::string_view::npos; at = text.find(pattern, from)) {
    out.append(text.substr(from, at - from));
    out += content;
    from = at + pattern.size();
  }
  out.append(text.substr(from));
  return out;
}

std::string normalize(const std::vector<NormalizerStep>& steps, std::string_view text) {
  std::string result(text);
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::nfc: result = nfc(result); break;
      case NormalizerStep::Kind::prepend: if (!result.empty()) result.insert(0, step.content); break;
      case NormalizerStep::Kind::replace: result = replace_all(result, step.pattern, step.content); break;
    }
  }
  return result;
}

void Metaspace::split_words(std::string_view piece, bool at_text_start,
                            const std::function<void(std::string_view)>& on_word) const {
  std::string text = replace_all(piece, " ", replacement);
  const bool starts_with_replacement = text.compare(0, replacement.size(), replacement) == 0;
  if (!starts_with_replacement && (prepend == Prepend::always || (prepend == Prepend::first && at_text_start)))
    text.insert(0, replacement);
  if (!split) {
    if (!text.empty()) on_word(text);
    return;
  }
  const std::string_view all(text);
  size_t word_start = 0;
  for (size_t at = all.find(replacement, 1); at != std::string_view::npos; at = all.find(replacement, at + replacement.size())) {
    if (at > word_start) on_word(all.substr(word_start, at - word_start));
    word_start = at;
  }
  if (word_start < all.size()) on_word(all.substr(word_start));
}

std::string decode_tokens(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens) {
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::replace:
        for (std::string& token : tokens) token = replace_all(token, step.pattern, step.content);
        break;
      case DecoderStep::Kind::byte_fallback: tokens = byte_fallback(std::move(tokens)); break;
      case DecoderStep::Kind::fuse: {
        std::string joined;
        for (const std::string& token : tokens) joined += token;
        tokens = {joined};
        break;
      }
      case DecoderStep::Kind::strip:
        for (std::string& token : tokens) token = strip(token, step.content, step.start, step.stop);
        break;
    }
  }
  std::string text;
  for (const std::string& token : tokens) text += token;
  return text;
}

}  // namespace memsweep::tokenizer_detail
