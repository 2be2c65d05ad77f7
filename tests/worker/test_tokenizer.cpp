// memsweep::Tokenizer on small hand-made vocabularies (merge order, added tokens, NFC, decode, errors,
// hash) and, when MEMSWEEP_SHARED_DIR holds them, a few facts of the real GPT-2 and GPT-NeoX files.
// Exhaustive id parity with `tokenizers` is tests/python/test_tokenizer_parity.py.
#define BOOST_TEST_MODULE test_tokenizer
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "worker/base/error.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

using memsweep::Tokenizer;
using nlohmann::json;
using Ids = std::vector<int32_t>;
namespace fs = std::filesystem;

// GPT-2's byte -> symbol map, written out here independently of the library: printable Latin-1 bytes
// are themselves, the rest count up from U+0100.
std::string symbol_of_byte(int byte) {
  bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
  int point = byte;
  if (!printable) {
    point = 256;
    for (int b = 0; b < byte; ++b)
      if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) ++point;
  }
  std::string utf8;
  if (point < 0x80) {
    utf8 += static_cast<char>(point);
  } else {
    utf8 += static_cast<char>(0xC0 | (point >> 6));
    utf8 += static_cast<char>(0x80 | (point & 0x3F));
  }
  return utf8;
}

// Ids 0..255 are the bytes (so 'a' is 97), then one id per merge result in merge order from 256.
const std::vector<std::string> kMerges = {"h e", "l l", "he ll", "Ġ w", "hell o", "a a", "b c", "a b", "Ã ©", "Ġ Ġ"};

json small_tokenizer_json() {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[symbol_of_byte(byte)] = byte;
  int32_t next = 256;
  for (const std::string& merge : kMerges) {
    std::string merged = merge;
    merged.erase(merged.find(' '), 1);
    vocab[merged] = next++;
  }
  vocab["xyz"] = next++;  // reachable only with ignore_merges: no merge makes it
  return json{{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
              {"added_tokens", json::array({json{{"id", 300}, {"content", "<|endoftext|>"}, {"special", true},
                                                 {"normalized", false}, {"lstrip", false}, {"rstrip", false},
                                                 {"single_word", false}}})},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
              {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                         {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"vocab", vocab}, {"merges", kMerges}}}};
}

Tokenizer small(const json& config = small_tokenizer_json()) { return Tokenizer::from_tokenizer_json(config.dump(), "small.json"); }

std::string shared_file(const std::string& relative) { return std::string(MEMSWEEP_SHARED_DIR) + "/data/tokenizers/" + relative; }

struct SharedFilesPresent {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result result(fs::exists(shared_file("gpt2/tokenizer.json")) &&
                                               fs::exists(shared_file("gpt-neox-20b/tokenizer.json")));
    result.message() << "skipped: the real tokenizer files are not under " << MEMSWEEP_SHARED_DIR;
    return result;
  }
};

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("memsweep_test_tokenizer_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& content) const { std::ofstream(path / name, std::ios::binary) << content; }
};

}  // namespace

BOOST_AUTO_TEST_CASE(encode_small_vocabulary) {
  struct Case {
    std::string text;
    Ids ids;
  } const cases[] = {
      {"", {}},
      {"hello", {260}},  // h e -> he, l l -> ll, he ll -> hell, hell o -> hello
      {"hello world", {260, 259, 'o', 'r', 'l', 'd'}},
      {"aaa", {261, 'a'}},  // one rank for both pairs: the leftmost merges first
      {"aaaa", {261, 261}},
      {"abc", {'a', 262}},  // "b c" (rank 6) before "a b" (rank 7)
      {"abd", {263, 'd'}},
      {"caf\xC3\xA9", {'c', 'a', 'f', 264}},   // é is the bytes C3 A9, merged by "Ã ©"
      {"cafe\xCC\x81", {'c', 'a', 'f', 264}},  // e + U+0301 becomes é by NFC first
      {"x<|endoftext|>y", {'x', 300, 'y'}},    // added token split out before pre-tokenization
      {"<|endoftext|><|endoftext|>", {300, 300}},
      {"a   b", {'a', 265, ' ', 'b'}},  // words "a", "  ", " b": a space run leaves its last space to the word
      {"it's", {'i', 't', '\'', 's'}},
      {"xyz", {'x', 'y', 'z'}},                  // in the vocabulary, but no merge makes it
      {"\xFF", {0xEF, 0xBF, 0xBD}},              // ill-formed UTF-8 becomes U+FFFD (EF BF BD)
      {std::string("a\0b", 3), {'a', 0, 'b'}},   // NUL is a character like any other
  };
  Tokenizer tokenizer = small();
  for (const Case& c : cases) BOOST_TEST(tokenizer.encode(c.text) == c.ids, "text \"" << c.text << "\"");
}

BOOST_AUTO_TEST_CASE(ignore_merges_takes_whole_words_from_the_vocabulary) {
  json config = small_tokenizer_json();
  config["model"]["ignore_merges"] = true;
  Tokenizer tokenizer = small(config);
  BOOST_TEST(tokenizer.encode("xyz") == Ids({266}));
  BOOST_TEST(tokenizer.encode("xyzw") == Ids({'x', 'y', 'z', 'w'}));
  BOOST_TEST(tokenizer.encode("hello") == Ids({260}));
  BOOST_TEST(tokenizer.content_hash() != small().content_hash());
}

BOOST_AUTO_TEST_CASE(added_tokens_match_leftmost_then_longest) {
  json config = small_tokenizer_json();
  config["normalizer"] = nullptr;
  for (auto [id, content] : {std::pair{301, "pq"}, std::pair{302, "pqr"}, std::pair{303, "qrs"}, std::pair{304, "  "}})
    config["added_tokens"].push_back({{"id", id}, {"content", content}, {"special", false}, {"normalized", true}});
  Tokenizer tokenizer = small(config);
  struct Case {
    std::string text;
    Ids ids;
  } const cases[] = {
      {"pqrs", {302, 's'}},  // "pq" and "pqr" start first; the longer wins, then "qrs" cannot match
      {"xqrs", {'x', 303}},
      {"pqpq", {301, 301}},
      {"a     b", {'a', 304, 304, ' ', 'b'}},  // like GPT-NeoX's space tokens: taken before the regex
  };
  for (const Case& c : cases) BOOST_TEST(tokenizer.encode(c.text) == c.ids, "text \"" << c.text << "\"");
  BOOST_TEST(tokenizer.token_id("pqr").value_or(-1) == 302);
  BOOST_TEST(tokenizer.vocab_size() == 305);
}

BOOST_AUTO_TEST_CASE(decode_gives_bytes) {
  struct Case {
    Ids ids;
    std::string bytes;
  } const cases[] = {
      {{}, ""},
      {{260, 259, 'o'}, "hello wo"},
      {{300}, "<|endoftext|>"},   // special tokens are kept
      {{264}, "\xC3\xA9"},
      {{0xC3}, "\xC3"},           // half a character: raw bytes, not U+FFFD
      {{265, 10, 9}, "  \n\t"},
  };
  Tokenizer tokenizer = small();
  for (const Case& c : cases) BOOST_TEST(tokenizer.decode(c.ids) == c.bytes);
  for (const std::string text : {"hello world", "  x\t\ny", "<|endoftext|>caf\xC3\xA9 !"})
    BOOST_TEST(tokenizer.decode(tokenizer.encode(text)) == text);
}

BOOST_AUTO_TEST_CASE(decode_refuses_unknown_ids) {
  Tokenizer tokenizer = small();
  BOOST_TEST(tokenizer.vocab_size() == 301);
  for (const auto& item : {std::pair{301, "cannot decode token id 301: the tokenizer has no such id (ids are 0..300)"},
                           std::pair{-1, "cannot decode token id -1: the tokenizer has no such id (ids are 0..300)"},
                           std::pair{280, "cannot decode token id 280: the tokenizer has no such id (ids are 0..300)"}}) {
    const std::string message = item.second;
    BOOST_CHECK_EXCEPTION(tokenizer.decode({'a', item.first}), memsweep::Error,
                          [&](const memsweep::Error& e) { return std::string(e.what()) == message; });
  }
}

BOOST_AUTO_TEST_CASE(lookups) {
  Tokenizer tokenizer = small();
  BOOST_TEST(tokenizer.eos_id().value_or(-1) == 300);
  BOOST_TEST(tokenizer.token_id("Ġw").value_or(-1) == 259);
  BOOST_TEST(!tokenizer.token_id(" w").has_value());
  json config = small_tokenizer_json();
  config["added_tokens"] = json::array();
  BOOST_TEST(!small(config).eos_id().has_value());
}

BOOST_AUTO_TEST_CASE(replace_invalid_utf8_like_python) {
  // Expected values are Python's bytes.decode('utf-8', 'replace').encode().
  const std::string fffd = "\xEF\xBF\xBD";
  struct Case {
    std::string in, out;
  } const cases[] = {
      {"plain \xE2\x82\xAC", "plain \xE2\x82\xAC"}, {"\xFF", fffd}, {"abc\x80" "def", "abc" + fffd + "def"},
      {"\xC3", fffd}, {"\xC3(", fffd + "("}, {"\xE2\x82", fffd}, {"\xED\xA0\x80", fffd + fffd + fffd},
      {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd}, {"\xC0\xAF", fffd + fffd},
      {"\xF0\x9F\x98\x80\xF0\x9F", "\xF0\x9F\x98\x80" + fffd}, {"\xE0\x80\x80", fffd + fffd + fffd},
      {"\xF8\x88", fffd + fffd},
  };
  for (const Case& c : cases) BOOST_TEST(memsweep::replace_invalid_utf8(c.in) == c.out);
}

// Each mutation of the small tokenizer.json and the exact message it must produce.
// Llama 3's shape on the small vocabulary: a Split by a regex, then ByteLevel without a regex; a BOS template.
json split_step(const std::string& behavior = "Isolated", bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+| "}}}, {"behavior", behavior}, {"invert", invert}};
}
json split_sequence(const std::string& behavior = "Isolated", bool invert = false) {
  return {{"type", "Sequence"},
          {"pretokenizers", {split_step(behavior, invert), {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}
json bos_template() {
  return {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"pair", json::array()},
          {"special_tokens", {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {300}}, {"tokens", {"<|endoftext|>"}}}}}}};
}

BOOST_AUTO_TEST_CASE(split_pre_tokenizer_and_template) {
  json config = small_tokenizer_json();
  config["pre_tokenizer"] = split_sequence();
  config["post_processor"] = {{"type", "Sequence"}, {"processors", {config["post_processor"], bos_template()}}};
  const Tokenizer split = small(config);
  // "hello" is one word (id 260, merged); "!!" a gap between matches, a word of its own; " " a match.
  BOOST_TEST(split.encode("hello!! hello") == (Ids{260, 33, 33, 32, 260}));
  BOOST_TEST(split.encode_with_special_tokens("hello") == (Ids{300, 260}));
  BOOST_TEST(small().encode_with_special_tokens("hello") == small().encode("hello"));  // no template: nothing added
  // Removed with invert: the gaps go (OLMo 2's form, where the pattern matches every character).
  config["pre_tokenizer"] = split_sequence("Removed", true);
  BOOST_TEST(small(config).encode("hello!! hello") == (Ids{260, 32, 260}));
  // What decides ids is in the hash: the pattern, and the tokens the template adds.
  BOOST_TEST(small(config).content_hash() != split.content_hash());
  BOOST_TEST(split.content_hash() != small().content_hash());
  // A pattern PCRE2 cannot compile is named (PCRE2's own words follow, which vary by its version).
  config["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "[a-z"}};
  BOOST_CHECK_EXCEPTION(small(config), memsweep::Error, [](const memsweep::Error& e) {
    return std::string(e.what()).rfind("small.json: pre_tokenizer Split: cannot compile the pre-tokenization regex \"[a-z\" at offset", 0) == 0;
  });
}

// SentencePiece-style BPE on a small vocabulary: <unk> <s> </s>, the 256 <0xNN> tokens (ids 3..258), then "▁" 259,
// "a" 260, "b" 261 and one id per merge result from 262. Llama 2's form: normalizer Prepend("▁") + Replace(" " -> "▁"),
// no pre-tokenizer; Mistral's: Metaspace; both decode with Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0).
const std::string kMeta = "\xE2\x96\x81";  // ▁
const std::vector<std::string> kPieceMerges = {"b " + kMeta, kMeta + " a", "a b", kMeta + "a b"};  // b▁ 262, ▁a 263, ab 264, ▁ab 265

json sentencepiece_json() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    vocab[name] = 3 + byte;
  }
  vocab[kMeta] = 259, vocab["a"] = 260, vocab["b"] = 261;
  int32_t next = 262;
  for (const std::string& merge : kPieceMerges) vocab[merge.substr(0, merge.find(' ')) + merge.substr(merge.find(' ') + 1)] = next++;
  json added = json::array();
  for (auto [id, content] : {std::pair{0, "<unk>"}, std::pair{1, "<s>"}, std::pair{2, "</s>"}})
    added.push_back({{"id", id}, {"content", content}, {"special", true}, {"normalized", false}, {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  json replace_space = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}};
  return json{{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
              {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", kMeta}}, replace_space}}}},
              {"pre_tokenizer", nullptr},
              {"post_processor", {{"type", "TemplateProcessing"},
                                  {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                  {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
              {"decoder", {{"type", "Sequence"},
                           {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}}, {{"type", "ByteFallback"}},
                                         {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                         {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", kPieceMerges}}}};
}

json with_metaspace(json config, const std::string& prepend_scheme, bool split) {
  config["normalizer"] = nullptr;
  config["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", prepend_scheme}, {"split", split}};
  return config;
}

BOOST_AUTO_TEST_CASE(sentencepiece_style_encoding) {
  struct Case {
    std::string form;  // "prepend": Llama 2's normalizer; else Metaspace's prepend_scheme, "+split" for split true
    std::string text;
    Ids ids;
  } const cases[] = {
      {"prepend", "", {}},
      {"prepend", "ab", {265}},                 // "▁ab": "▁ a" (rank 1) before "a b" (rank 2), then "▁a b"
      {"prepend", "b a", {259, 262, 260}},      // "▁b▁a": "b ▁" first, which leaves "a" alone
      {"prepend", " a", {259, 263}},            // "▁▁a": the prepended "▁" and the space's
      {"prepend", "a\xC3\xA9", {263, 198, 172}},  // é is not in the vocabulary: its bytes <0xC3> <0xA9>
      {"prepend", "a</s>b", {263, 2, 259, 261}},  // every piece between added tokens gets its "▁"
      {"first", " a", {263}},                   // starts with "▁" already: none prepended
      {"first", "a</s>b", {263, 2, 261}},       // only the text's first piece gets one
      {"first", "</s>b", {2, 261}},
      {"first", "ab ab", {263, 262, 264}},      // one word "▁ab▁ab": "b ▁" first
      {"first+split", "ab ab", {265, 265}},     // words "▁ab" "▁ab"
      {"first+split", "a  b", {263, 259, 259, 261}},  // "▁a" "▁" "▁b": a "▁" goes with what follows it
      {"always", "a</s>b", {263, 2, 259, 261}},
      {"never", "a b", {260, 259, 261}},
  };
  for (const Case& c : cases) {
    json config = sentencepiece_json();
    if (c.form != "prepend") {
      const size_t plus = c.form.find('+');
      config = with_metaspace(config, c.form.substr(0, plus), plus != std::string::npos);
    }
    BOOST_TEST(small(config).encode(c.text) == c.ids, c.form << " \"" << c.text << "\"");
  }
  BOOST_TEST(small(sentencepiece_json()).encode_with_special_tokens("ab") == Ids({1, 265}));
}

BOOST_AUTO_TEST_CASE(sentencepiece_unknown_characters) {
  struct Case {
    bool byte_fallback, fuse_unk;
    Ids ids;  // of "xy a" with Metaspace (first): "▁xy▁a"
  } const cases[] = {
      {true, true, {259, 3 + 'x', 3 + 'y', 263}},
      {false, true, {259, 0, 263}},  // x and y: one <unk>
      {false, false, {259, 0, 0, 263}},
  };
  for (const Case& c : cases) {
    json config = with_metaspace(sentencepiece_json(), "first", false);
    config["model"]["byte_fallback"] = c.byte_fallback;
    config["model"]["fuse_unk"] = c.fuse_unk;
    BOOST_TEST(small(config).encode("xy a") == c.ids, "byte_fallback " << c.byte_fallback << ", fuse_unk " << c.fuse_unk);
  }
  json config = sentencepiece_json();
  config["model"]["byte_fallback"] = false;
  config["model"]["unk_token"] = nullptr;  // `tokenizers` would drop the character
  BOOST_CHECK_EXCEPTION(small(config).encode("ax"), memsweep::Error, [](const memsweep::Error& e) {
    return std::string(e.what()) == "the tokenizer has no token for the character \"x\", and no byte fallback or unk token for it";
  });
}

BOOST_AUTO_TEST_CASE(sentencepiece_decoding) {
  const std::string fffd = "\xEF\xBF\xBD";
  struct Case {
    Ids ids;
    std::string text;
  } const cases[] = {
      {{263, 2, 259, 261}, "a</s> b"},            // "▁" becomes " ", the first space is stripped
      {{259, 259, 263}, "  a"},                    // only one
      {{263, 198, 172}, "a\xC3\xA9"},              // <0xC3> <0xA9>: well-formed, é
      {{198}, fffd},                               // a cut character: U+FFFD per byte token
      {{198, 198, 263}, fffd + fffd + " a"},
      {{1, 265}, "<s> ab"},                        // special tokens kept
  };
  const Tokenizer tokenizer = small(sentencepiece_json());
  for (const Case& c : cases) BOOST_TEST(tokenizer.decode(c.ids) == c.text);
  for (const std::string text : {"ab b a", "a\xC3\xA9 </s>", "b  a "}) BOOST_TEST(tokenizer.decode(tokenizer.encode(text)) == text);
}

BOOST_AUTO_TEST_CASE(sentencepiece_hash_covers_its_pipeline) {
  const json config = sentencepiece_json();
  const std::string hash = small(config).content_hash();
  BOOST_TEST(hash == "b864a3240df102ca22c6de52159e349738e06f553d1177d006725aa32d9f334f");
  json no_fallback = config, no_fuse = config, first = with_metaspace(config, "first", false), split = with_metaspace(config, "first", true),
       other_strip = config;
  no_fallback["model"]["byte_fallback"] = false;
  no_fuse["model"]["fuse_unk"] = false;
  other_strip["decoder"]["decoders"][3]["start"] = 0;
  std::set<std::string> hashes{hash};
  for (const json& different : {no_fallback, no_fuse, first, split, other_strip}) BOOST_TEST(hashes.insert(small(different).content_hash()).second);
  json offsets_only = config;  // the pair template adds nothing to a single text
  offsets_only["post_processor"]["pair"] = json::array();
  BOOST_TEST(small(offsets_only).content_hash() == hash);
}

BOOST_AUTO_TEST_CASE(sentencepiece_refusals_are_named) {
  struct Case {
    std::function<void(json&)> mutate;
    std::string message;
  } const cases[] = {
      {[](json& j) { j = with_metaspace(j, "sometimes", false); }, "small.json: \"pre_tokenizer.prepend_scheme\" is \"sometimes\"; it must be always, first or never"},
      {[](json& j) { j = with_metaspace(j, "first", false); j["pre_tokenizer"]["replacement"] = "__"; }, "small.json: \"pre_tokenizer.replacement\" is \"__\"; it must be one character"},
      {[](json& j) { j = with_metaspace(j, "first", false); j["pre_tokenizer"]["add_prefix_space"] = false; },
       "small.json: \"pre_tokenizer.add_prefix_space\" is false but \"pre_tokenizer.prepend_scheme\" is \"first\" (`tokenizers` refuses this too)"},
      {[](json& j) { j = with_metaspace(j, "first", false); j["pre_tokenizer"]["frobnicate"] = 1; }, "small.json: unknown key \"pre_tokenizer.frobnicate\"; memsweep does not implement it, so it refuses the file"},
      {[](json& j) { j["normalizer"]["normalizers"][1]["pattern"] = {{"String", ""}}; },
       "small.json: \"normalizer.normalizers[1].pattern\" is {\"String\":\"\"}; memsweep implements only {\"String\": \"...\"} (not empty)"},
      {[](json& j) { j["normalizer"]["normalizers"][0]["type"] = "Strip"; },
       "small.json: normalizer.normalizers[0] type \"Strip\" is not supported; memsweep implements NFC, Prepend, Replace, a Sequence of them, or no normalizer"},
      {[](json& j) { j["decoder"] = {{"type", "Metaspace"}, {"replacement", kMeta}}; },
       "small.json: decoder type \"Metaspace\" is not supported without a ByteLevel pre-tokenizer; memsweep implements Replace, ByteFallback, Fuse, Strip and a Sequence of them there"},
      {[](json& j) { j["decoder"]["decoders"][1] = {{"type", "ByteLevel"}}; },
       "small.json: decoder.decoders[1] type \"ByteLevel\" is not supported without a ByteLevel pre-tokenizer; memsweep implements Replace, ByteFallback, Fuse, Strip and a Sequence of them there"},
      {[](json& j) { j["decoder"]["decoders"][3]["content"] = "  "; }, "small.json: \"decoder.decoders[3].content\" is \"  \"; it must be one character"},
      {[](json& j) { j["decoder"]["decoders"][3]["start"] = -1; }, "small.json: \"decoder.decoders[3].start\" is -1, not a count"},
      {[](json& j) { j.erase("decoder"); },
       "small.json: \"decoder\" is missing or null; memsweep implements Replace, ByteFallback, Fuse, Strip and a Sequence of them without a ByteLevel pre-tokenizer"},
      {[](json& j) { j["model"]["unk_token"] = "<oops>"; }, "small.json: \"model.unk_token\" is \"<oops>\", which is not in the vocabulary"},
      {[](json& j) { j["model"]["unk_token"] = 0; }, "small.json: \"model.unk_token\" must be string, found number"},
      {[](json& j) { j["model"]["dropout"] = 0.5; }, "small.json: \"model.dropout\" is 0.5; memsweep does not implement dropout"},
  };
  for (const Case& c : cases) {
    json config = sentencepiece_json();
    c.mutate(config);
    std::string message = "(no error)";
    try {
      small(config);
    } catch (const memsweep::Error& e) {
      message = e.what();
    }
    BOOST_TEST(message == c.message);
  }
}

// A folder is read as transformers 5.x's AutoTokenizer reads it: with tokenizer_class LlamaTokenizer it keeps
// tokenizer.json's vocabulary, merges, added tokens and template, and builds the rest (Metaspace instead of Llama 2's
// Prepend + Replace normalizer).
BOOST_AUTO_TEST_CASE(folders_read_as_transformers_reads_them) {
  struct Case {
    json config;
    Ids space_a, a_eos_b;  // " a" and "a</s>b"
    std::string decoded;   // of " a"'s ids
  } const cases[] = {
      {json::object(), {259, 263}, {263, 2, 259, 261}, " a"},  // no tokenizer class: tokenizer.json as it is
      {{{"tokenizer_class", "PreTrainedTokenizerFast"}}, {259, 263}, {263, 2, 259, 261}, " a"},
      {{{"tokenizer_class", "LlamaTokenizer"}, {"legacy", false}}, {263}, {263, 2, 261}, "a"},  // Metaspace, prepend first
      {{{"tokenizer_class", "LlamaTokenizerFast"}}, {263}, {263, 2, 261}, "a"},
      {{{"tokenizer_class", "LlamaTokenizer"}, {"legacy", true}}, {263}, {263, 2, 259, 261}, "a"},  // always
      {{{"tokenizer_class", "LlamaTokenizer"}, {"add_prefix_space", false}}, {263}, {260, 2, 261}, " a"},  // never, no Strip
  };
  TempDir dir;
  dir.write("tokenizer.json", sentencepiece_json().dump());
  const std::string file_hash = Tokenizer::load((dir.path / "tokenizer.json").string()).content_hash();
  for (const Case& c : cases) {
    dir.write("tokenizer_config.json", c.config.dump());
    const Tokenizer tokenizer = Tokenizer::load(dir.path.string());
    BOOST_TEST(tokenizer.encode(" a") == c.space_a, c.config.dump());
    BOOST_TEST(tokenizer.encode("a</s>b") == c.a_eos_b, c.config.dump());
    BOOST_TEST(tokenizer.decode(tokenizer.encode(" a")) == c.decoded, c.config.dump());
    const bool rebuilt = c.config.value("tokenizer_class", "").rfind("Llama", 0) == 0;
    BOOST_TEST((tokenizer.content_hash() != file_hash) == rebuilt, c.config.dump());
  }
  dir.write("tokenizer_config.json", json{{"tokenizer_class", "LlamaTokenizer"}, {"legacy", "no"}}.dump());
  BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path.string()), memsweep::Error, [&](const memsweep::Error& e) {
    return std::string(e.what()) == (dir.path / "tokenizer_config.json").string() + ": \"legacy\" must be true, false or null, found \"no\"";
  });
}

BOOST_AUTO_TEST_CASE(unsupported_features_are_named) {
  struct Case {
    std::function<void(json&)> mutate;
    std::string message;
  } const cases[] = {
      {[](json& j) { j["model"]["type"] = "WordPiece"; }, "small.json: model type \"WordPiece\" is not supported; memsweep implements only BPE"},
      {[](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }, "small.json: normalizer type \"NFKC\" is not supported; memsweep implements NFC, Prepend, Replace, a Sequence of them, or no normalizer"},
      {[](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "NFKC"}}}}}; },
       "small.json: normalizer.normalizers[1] type \"NFKC\" is not supported; memsweep implements NFC, Prepend, Replace, a Sequence of them, or no normalizer"},
      {[](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Sequence"}, {"normalizers", json::array()}}}}}; },
       "small.json: normalizer.normalizers[0] is a Sequence inside a Sequence; memsweep does not implement it"},
      {[](json& j) { j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", "_"}}; },
       "small.json: \"normalizer.pattern\" is {\"Regex\":\" +\"}; memsweep implements only {\"String\": \"...\"} (not empty)"},
      {[](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "small.json: pre_tokenizer type \"Whitespace\" is not supported; memsweep implements ByteLevel, a Sequence of Split and ByteLevel, Metaspace, or none"},
      {[](json& j) { j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {j["pre_tokenizer"], split_step()}}}; },
       "small.json: \"pre_tokenizer.pretokenizers\" is [{\"add_prefix_space\":false,\"trim_offsets\":true,\"type\":\"ByteLevel\",\"use_regex\":true},{\"behavior\":\"Isolated\",\"invert\":false,\"pattern\":{\"Regex\":\"[a-z]+| \"},\"type\":\"Split\"}]; memsweep implements a Sequence of exactly [Split, ByteLevel]"},
      {[](json& j) { j["pre_tokenizer"] = split_sequence(); j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithPrevious"; },
       "small.json: \"pre_tokenizer.pretokenizers[0].behavior\" is \"MergedWithPrevious\" with invert false; memsweep implements Isolated (invert false) and Removed (invert true)"},
      {[](json& j) { j["pre_tokenizer"] = split_sequence(); j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", " "}}; },
       "small.json: \"pre_tokenizer.pretokenizers[0].pattern\" is {\"String\":\" \"}; memsweep implements only {\"Regex\": \"...\"}"},
      {[](json& j) { j["pre_tokenizer"] = split_sequence(); j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true; },
       "small.json: \"pre_tokenizer.pretokenizers[1].\" after a Split must have use_regex and add_prefix_space false; memsweep implements only that"},
      {[](json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; }, "small.json: post_processor type \"RobertaProcessing\" is not supported; memsweep implements ByteLevel, TemplateProcessing, a Sequence of them, or none"},
      {[](json& j) { j["post_processor"] = bos_template(); j["post_processor"]["special_tokens"] = json::object(); },
       "small.json: \"post_processor.single[0]\" names the special token \"<|endoftext|>\", which \"post_processor.special_tokens\" does not give ids"},
      {[](json& j) { j["post_processor"] = bos_template(); j["post_processor"]["special_tokens"]["<|endoftext|>"]["ids"] = {999}; },
       "small.json: the post-processor adds id 999, which no token has"},
      {[](json& j) { j["pre_tokenizer"] = nullptr; },  // SentencePiece-style BPE, whose decoder is not ByteLevel
       "small.json: decoder type \"ByteLevel\" is not supported without a ByteLevel pre-tokenizer; memsweep implements Replace, ByteFallback, Fuse, Strip and a Sequence of them there"},
      {[](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}}; }, "small.json: missing key \"post_processor.single\""},
      {[](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "small.json: decoder type \"WordPiece\" is not supported with a ByteLevel pre-tokenizer; memsweep implements only ByteLevel there"},
      {[](json& j) { j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "Fuse"}}}}}; }, "small.json: decoder type \"Sequence\" is not supported with a ByteLevel pre-tokenizer; memsweep implements only ByteLevel there"},
      {[](json& j) { j.erase("decoder"); }, "small.json: \"decoder\" is missing or null; memsweep implements the ByteLevel decoder with a ByteLevel pre-tokenizer"},
      {[](json& j) { j["model"]["byte_fallback"] = true; }, "small.json: \"model.byte_fallback\" is true; memsweep does not implement byte_fallback"},
      {[](json& j) { j["model"]["dropout"] = 0.1; }, "small.json: \"model.dropout\" is 0.1; memsweep does not implement dropout"},
      {[](json& j) { j["model"]["unk_token"] = "<unk>"; }, "small.json: \"model.unk_token\" is \"<unk>\"; memsweep does not implement unk_token"},
      {[](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "small.json: \"model.continuing_subword_prefix\" is \"##\"; memsweep does not implement continuing_subword_prefix"},
      {[](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }, "small.json: \"model.end_of_word_suffix\" is \"</w>\"; memsweep does not implement end_of_word_suffix"},
      {[](json& j) { j["model"]["frobnicate"] = 1; }, "small.json: unknown key \"model.frobnicate\"; memsweep does not implement it, so it refuses the file"},
      {[](json& j) { j["added_tokens"][0]["lstrip"] = true; }, "small.json: \"added_tokens[0].lstrip\" is true; memsweep does not implement lstrip"},
      {[](json& j) { j["added_tokens"][0]["single_word"] = true; }, "small.json: \"added_tokens[0].single_word\" is true; memsweep does not implement single_word"},
      {[](json& j) { j["truncation"] = {{"max_length", 5}}; }, "small.json: \"truncation\" is set; memsweep does not implement truncation (it must be null)"},
      {[](json& j) { j["pre_tokenizer"].erase("add_prefix_space"); }, "small.json: missing key \"pre_tokenizer.add_prefix_space\""},
      {[](json& j) { j["model"]["vocab"] = json::array(); }, "small.json: \"model.vocab\" must be object, found array"},
      {[](json& j) { j["model"]["vocab"]["a"] = "x"; }, "small.json: \"model.vocab\" maps \"a\" to \"x\", not an id"},
      {[](json& j) { j["model"]["vocab"]["zz"] = 97; }, "small.json: \"model.vocab\" gives id 97 to both \"a\" and \"zz\""},
      {[](json& j) { j["model"]["merges"].push_back("z zz"); }, "small.json: merge 10 (\"z zz\") uses \"zz\", which is not in the vocabulary"},
      {[](json& j) { j["model"]["merges"].push_back("abc"); }, "small.json: model.merges[10] is \"abc\"; expected two tokens separated by one space"},
      {[](json& j) { j["added_tokens"][0]["id"] = 5; j["added_tokens"][0]["content"] = "hello"; }, "small.json: added token \"hello\" has id 5 but the vocabulary gives it id 260"},
      {[](json& j) { j["added_tokens"][0]["id"] = 5; }, "small.json: added token \"<|endoftext|>\" has id 5, already a vocabulary token's id"},
  };
  for (const Case& c : cases) {
    json config = small_tokenizer_json();
    c.mutate(config);
    std::string message = "(no error)";
    try {
      small(config);
    } catch (const memsweep::Error& e) {
      message = e.what();
    }
    BOOST_TEST(message == c.message);
  }
}

BOOST_AUTO_TEST_CASE(load_errors_name_the_file) {
  TempDir dir;
  dir.write("bad.json", "{\"model\": ");
  std::string path = dir.path.string();
  struct Case {
    std::string path, message_start;
  } const cases[] = {
      {path + "/missing.json", "cannot open " + path + "/missing.json"},
      {path + "/bad.json", path + "/bad.json: not valid JSON at byte 11"},
      {path, path + ": a tokenizer directory must hold tokenizer.json, or vocab.json and merges.txt; found neither"},
  };
  for (const Case& c : cases) {
    std::string message = "(no error)";
    try {
      Tokenizer::load(c.path);
    } catch (const memsweep::Error& e) {
      message = e.what();
    }
    BOOST_TEST(message.rfind(c.message_start, 0) == 0, message);
  }
  dir.write("vocab.json", "{\"a\": 0, \"b\": 1}");
  dir.write("merges.txt", "#version: 0.2\na b\nab\n");
  BOOST_CHECK_EXCEPTION(Tokenizer::load(path), memsweep::Error, [&](const memsweep::Error& e) {
    return std::string(e.what()) == path + "/merges.txt: line 3 is \"ab\"; expected two tokens separated by one space";
  });
  // Ids far beyond the number of tokens would size the id table in gigabytes (found by fuzz_tokenizer).
  dir.write("vocab.json", "{\"a\": 0, \"b\": 2000000000}");
  dir.write("merges.txt", "#version: 0.2\n");
  BOOST_CHECK_EXCEPTION(Tokenizer::load(path), memsweep::Error, [&](const memsweep::Error& e) {
    return std::string(e.what()).find("token ids go up to 2000000000 for only 2 tokens") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(hash_is_the_canonical_content) {
  json config = small_tokenizer_json();
  std::string hash = small(config).content_hash();
  // The canonical form is versioned: a change of this value breaks every dataset's declared tokenizer.
  BOOST_TEST(hash == "d7dc363a2e9761022369319699a54f52cfdf475f5962f6192eeac13a40504ec1");
  json as_arrays = config;
  as_arrays["model"]["merges"] = json::array();
  for (const std::string& merge : kMerges) as_arrays["model"]["merges"].push_back({merge.substr(0, merge.find(' ')), merge.substr(merge.find(' ') + 1)});
  BOOST_TEST(small(as_arrays).content_hash() == hash);
  BOOST_TEST(Tokenizer::from_tokenizer_json(config.dump(2), "indented.json").content_hash() == hash);
  json offsets_only = config;  // offsets options change no id
  offsets_only["pre_tokenizer"]["trim_offsets"] = false;
  offsets_only["post_processor"] = nullptr;
  BOOST_TEST(small(offsets_only).content_hash() == hash);

  json other_merges = config;
  std::swap(other_merges["model"]["merges"][0], other_merges["model"]["merges"][1]);
  json no_nfc = config;
  no_nfc["normalizer"] = nullptr;
  json not_special = config;
  not_special["added_tokens"][0]["special"] = false;
  for (const json& different : {other_merges, no_nfc, not_special}) BOOST_TEST(small(different).content_hash() != hash);

  // The same tokenizer as vocab.json + merges.txt (GPT-2 layout, <|endoftext|> special) has the same hash.
  config["normalizer"] = nullptr;
  config["model"]["vocab"]["<|endoftext|>"] = 300;
  std::string merges = "#version: 0.2\n";
  for (const std::string& merge : kMerges) merges += merge + "\n";
  BOOST_TEST(Tokenizer::from_vocab_and_merges(config["model"]["vocab"].dump(), merges, "vocab.json", "merges.txt").content_hash() ==
             small(config).content_hash());
}

BOOST_AUTO_TEST_CASE(real_gpt2_and_gpt_neox, *boost::unit_test::precondition(SharedFilesPresent())) {
  Tokenizer gpt2 = Tokenizer::load(shared_file("gpt2/tokenizer.json"));
  BOOST_TEST(gpt2.vocab_size() == 50257);
  BOOST_TEST(gpt2.eos_id().value_or(-1) == 50256);
  BOOST_TEST(gpt2.encode("Hello world<|endoftext|>") == Ids({15496, 995, 50256}));
  Tokenizer neox = Tokenizer::load(shared_file("gpt-neox-20b"));
  BOOST_TEST(neox.vocab_size() == 50277);
  BOOST_TEST(neox.eos_id().value_or(-1) == 0);
  BOOST_TEST(neox.token_id("<|padding|>").value_or(-1) == 1);
  BOOST_TEST(neox.encode("a   b  c") == Ids({66, 50275, 67, 50276, 68}));  // runs of spaces are added tokens
  BOOST_TEST(neox.decode({50254}) == std::string(24, ' '));
  // Identities that datasets and models declare: they must never change for these files.
  BOOST_TEST(gpt2.content_hash() == "fdad03eb0bd4bbab495bf1cef6ff3e15f8909421deae5836bed3349bcbb0718c");
  BOOST_TEST(Tokenizer::load(shared_file("gpt2")).content_hash() == gpt2.content_hash());
  BOOST_TEST(neox.content_hash() == "7238938d91206b56df1cebb1a10c3e19451eb31b532f285e3eb376ea5f87c433");
}

// Llama 3, Qwen2, OLMo 2 (byte-level BPE after a Split), Llama 2 and Mistral (SentencePiece-style): their identities
// and what the post-processor adds.
BOOST_AUTO_TEST_CASE(real_families, *boost::unit_test::precondition(SharedFilesPresent())) {
  const struct {
    const char* family;
    const char* hash;
    Ids with_special;  // "Hello world" with add_special_tokens=True, as `tokenizers` gives it
  } families[] = {
      {"llama-3", "2223c455430caf8bf361d8cb36bad7edff89b493774667a9772315250f52324d", {128000, 9906, 1917}},
      {"qwen2", "8102edda3416857d8fcea252bde59bebc72be1ebb9d529db2493e940d493422e", {9707, 1879}},
      {"olmo-2", "14d60cbf59f738db1513bd9ccec2b48b12484b8bdc95357f06773f8274c1623c", {9906, 1917}},
      {"llama-2", "907a1fb54630c159b561f96d28a054dd574f29814694393f5d22656f601324c8", {1, 15043, 3186}},
      {"mistral", "08165e66ff8438cb47837476cefb81c4053a9f304c754eaecd456f4df408d099", {1, 22557, 1526}},
  };
  for (const auto& f : families) {
    if (!fs::exists(shared_file(std::string(f.family) + "/tokenizer.json"))) continue;
    const Tokenizer tokenizer = Tokenizer::load(shared_file(std::string(f.family) + "/tokenizer.json"));
    BOOST_TEST(tokenizer.content_hash() == f.hash, f.family);
    BOOST_TEST(tokenizer.encode_with_special_tokens("Hello world") == f.with_special, f.family);
  }
  // Mistral's folder, read as transformers reads it (its tokenizer_config.json names LlamaTokenizer): the same pipeline
  // as its file but for the unk token, which transformers leaves unset and its full byte fallback never needs.
  if (fs::exists(shared_file("mistral/tokenizer_config.json"))) {
    const Tokenizer folder = Tokenizer::load(shared_file("mistral"));
    BOOST_TEST(folder.content_hash() == "1c1fbcd6450998425b528ee0a09309a645f88bba66957ab3c4fa3617eb996db4");
    BOOST_TEST(folder.encode(" Hello world") == Ids({22557, 1526}));
  }
}
