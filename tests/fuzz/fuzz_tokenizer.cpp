// libFuzzer target: tokenizer.json loading and encoding with what loaded (first byte even; seeds with ByteLevel, with
// Split + TemplateProcessing, and SentencePiece-style with Prepend + Replace or Metaspace, byte_fallback and unk), and
// encoding arbitrary bytes with a small fixed tokenizer, then decoding the ids: byte-level BPE (first byte 1 mod 4) or
// SentencePiece-style BPE (3 mod 4). Every input is a result or a memsweep::Error.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "worker/base/error.h"
#include "worker/tokenizer/tokenizer.h"

namespace {
const memsweep::Tokenizer& small_tokenizer() {
  // GPT-2's byte alphabet is needed for any byte to encode: a vocabulary of the 256 byte symbols plus merges.
  static const memsweep::Tokenizer tokenizer = [] {
    std::string vocab = "{";
    int id = 0;
    auto symbol = [](int byte) {
      // GPT-2 byte-to-unicode map: printable Latin-1 bytes map to themselves, the rest to 256 + n.
      static int next = 256;
      static int table[256] = {0};
      static bool built = false;
      if (!built) {
        for (int b = 0; b < 256; ++b) {
          bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
          table[b] = printable ? b : next++;
        }
        built = true;
      }
      int cp = table[byte];
      std::string utf8;
      if (cp < 0x80) utf8 += char(cp);
      else utf8 += char(0xC0 | (cp >> 6)), utf8 += char(0x80 | (cp & 0x3F));
      return utf8;
    };
    auto escape = [](const std::string& s) {
      std::string out;
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      return out;
    };
    for (int b = 0; b < 256; ++b) vocab += (b ? "," : "") + std::string("\"") + escape(symbol(b)) + "\":" + std::to_string(id++);
    vocab += ",\"" + escape(symbol('t') + symbol('h')) + "\":" + std::to_string(id++);
    vocab += ",\"" + escape(symbol(' ') + symbol('a')) + "\":" + std::to_string(id++);
    vocab += "}";
    std::string merges = "[\"" + escape(symbol('t')) + " " + escape(symbol('h')) + "\",\"" + escape(symbol(' ')) + " " +
                         escape(symbol('a')) + "\"]";
    std::string json = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[{\"id\":" +
                       std::to_string(id) +
                       ",\"content\":\"<|endoftext|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                       "\"normalized\":false,\"special\":true}],\"normalizer\":{\"type\":\"NFC\"},"
                       "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                       "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
                       "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
                       "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":" +
                       vocab + ",\"merges\":" + merges + "}}";
    return memsweep::Tokenizer::from_tokenizer_json(json, "fuzz-fixed-tokenizer.json");
  }();
  return tokenizer;
}
// Llama 2's shape: normalizer Prepend("▁") + Replace(" " -> "▁"), characters, <0xNN> for every byte, a few merges.
const memsweep::Tokenizer& small_sentencepiece_tokenizer() {
  static const memsweep::Tokenizer tokenizer = [] {
    const std::string meta = "\xE2\x96\x81";
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    for (int byte = 0; byte < 256; ++byte) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", byte);
      vocab[name] = 3 + byte;
    }
    int id = 259;
    for (const std::string& piece : {meta, std::string("t"), std::string("h"), std::string("e"), meta + "t", std::string("he"), meta + "the"})
      vocab[piece] = id++;
    const nlohmann::json replace_space = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}};
    const nlohmann::json json = {
        {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}}},
        {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", meta}}, replace_space}}}},
        {"pre_tokenizer", nullptr},
        {"decoder", {{"type", "Sequence"},
                     {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", meta}}}, {"content", " "}}, {{"type", "ByteFallback"}},
                                   {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
        {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab},
                   {"merges", {meta + " t", "h e", meta + "t he"}}}}};
    return memsweep::Tokenizer::from_tokenizer_json(json.dump(), "fuzz-fixed-sentencepiece.json");
  }();
  return tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] % 2 == 0) {
      auto tokenizer = memsweep::Tokenizer::from_tokenizer_json(text, "fuzz.json");
      auto ids = tokenizer.encode_with_special_tokens("fuzzing the loaded tokenizer: ÄÖÜ 123 <|endoftext|> it's\n  x");
      tokenizer.decode(ids);
    } else if (data[0] % 4 == 3) {
      // Lossless but for "▁", which comes back as a space, and an added token's string, followed by one.
      const auto& tokenizer = small_sentencepiece_tokenizer();
      const std::string back = tokenizer.decode(tokenizer.encode(text)), repaired = memsweep::replace_invalid_utf8(text);
      std::string expected;
      for (size_t at = 0; at < repaired.size(); ++at)
        if (repaired.compare(at, 3, "\xE2\x96\x81") == 0) expected += ' ', at += 2;
        else expected += repaired[at];
      if (repaired.find("<s>") == std::string::npos && back != expected) __builtin_trap();
    } else {
      const auto& tokenizer = small_tokenizer();
      auto ids = tokenizer.encode(text);
      std::string back = tokenizer.decode(ids);
      // Byte-level BPE loses nothing but NFC normalization and invalid UTF-8 (replaced): decoding must give
      // back the repaired, normalized text; at least it must not be longer than 3 bytes per input byte.
      if (back.size() > 3 * text.size() + 16) __builtin_trap();
    }
  } catch (const memsweep::Error&) {
  }
  return 0;
}
