// memsweep::Tokenizer on small hand-made byte-level vocabularies (merge order, added tokens, NFC, decode, errors,
// hash) and, when MEMSWEEP_SHARED_DIR holds them, a few facts of the real files of every family. SentencePiece-style
// BPE: test_tokenizer_sentencepiece.cpp.
// Exhaustive id parity with `tokenizers` is tests/python/test_tokenizer_parity.py.
#define BOOST_TEST_MODULE test_tokenizer
#include <boost/test/unit_test.hpp>

#include <functional>
#include <string>
#include <vector>

#include "tests/worker/tokenizer_testing.h"
#include "worker/base/error.h"

namespace {

using memsweep::Tokenizer;
using nlohmann::json;
using namespace tokenizer_testing;

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

Tokenizer small(const json& config = small_tokenizer_json()) { return from_json(config); }

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

// A folder whose tokenizer_config.json names GPT2Tokenizer (OLMo 2's) is read as transformers 5.x builds it: GPT-2's
// ByteLevel pre-tokenizer in place of the file's Split, plain BPE, no post-processor; the file's vocabulary, merges and
// added tokens.
BOOST_AUTO_TEST_CASE(gpt2_tokenizer_folder_as_transformers_builds_it) {
  json file = small_tokenizer_json();
  file["pre_tokenizer"] = split_sequence();
  file["post_processor"] = bos_template();
  file["model"]["ignore_merges"] = true;
  json gpt2 = small_tokenizer_json();  // what transformers makes of it: GPT-2's pipeline
  gpt2["normalizer"] = nullptr;
  gpt2["post_processor"] = nullptr;
  TempDir dir;
  dir.write("tokenizer.json", file.dump());
  dir.write("tokenizer_config.json", json{{"tokenizer_class", "GPT2Tokenizer"}, {"add_bos_token", false}}.dump());
  const Tokenizer folder = Tokenizer::load(dir.path.string()), expected = small(gpt2);
  for (const std::string text : {"hello world", "xyz aab", "hello  world!"}) {
    BOOST_TEST(folder.encode(text) == expected.encode(text), text);
    BOOST_TEST(folder.encode_with_special_tokens(text) == expected.encode(text), text);  // no BOS template any more
  }
  BOOST_TEST(folder.encode("xyz") != small(file).encode("xyz"));  // ignore_merges is gone: xyz is no longer one token
  BOOST_TEST(folder.content_hash() != small(file).content_hash());
  dir.write("tokenizer_config.json", json{{"tokenizer_class", "GPT2TokenizerFast"}, {"add_bos_token", true}}.dump());
  BOOST_CHECK_EXCEPTION(Tokenizer::load(dir.path.string()), memsweep::Error, [&](const memsweep::Error& e) {
    return std::string(e.what()) == (dir.path / "tokenizer_config.json").string() +
                                        ": \"add_bos_token\": true with tokenizer_class GPT2TokenizerFast is not supported";
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
    BOOST_TEST(error_message([&] { small(config); }) == c.message);
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
    const std::string message = error_message([&] { Tokenizer::load(c.path); });
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
      {"llama-2", "6933ef7e219b763f79129b1b64fe0b0c714d0de8a0cf14f4ece37ab2b0c3dc1b", {1, 15043, 3186}},
      {"mistral", "5eb5cb73ceaf471e1dc25278b4ccbc9f009971520334898e8c04726f7bf17fca", {1, 22557, 1526}},
  };
  for (const auto& f : families) {
    if (!fs::exists(shared_file(std::string(f.family) + "/tokenizer.json"))) continue;
    const Tokenizer tokenizer = Tokenizer::load(shared_file(std::string(f.family) + "/tokenizer.json"));
    BOOST_TEST(tokenizer.content_hash() == f.hash, f.family);
    BOOST_TEST(tokenizer.encode_with_special_tokens("Hello world") == f.with_special, f.family);
  }
  // Mistral's folder, read as transformers reads it (its tokenizer_config.json names LlamaTokenizer): the same pipeline
  // as its file but for the unk token, which transformers leaves unset and its full byte fallback never needs: the
  // same tokenizer, the same hash.
  if (fs::exists(shared_file("mistral/tokenizer_config.json"))) {
    const Tokenizer folder = Tokenizer::load(shared_file("mistral"));
    BOOST_TEST(folder.content_hash() == "5eb5cb73ceaf471e1dc25278b4ccbc9f009971520334898e8c04726f7bf17fca");
    BOOST_TEST(folder.encode(" Hello world") == Ids({22557, 1526}));
  }
}
