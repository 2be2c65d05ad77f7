// SentencePiece-style BPE (Llama 2, Mistral) on a small hand-made vocabulary: the normalizer and Metaspace forms,
// byte fallback, unk, decoding, the hash, refusals, and a folder read as transformers reads it. Ids here were checked
// against `tokenizers`; exhaustive parity with the real files is tests/python/test_tokenizer_parity.py.
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "tests/worker/tokenizer_testing.h"
#include "worker/base/error.h"

namespace {

using memsweep::Tokenizer;
using nlohmann::json;
using namespace tokenizer_testing;

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

}  // namespace

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
    BOOST_TEST(from_json(config).encode(c.text) == c.ids, c.form << " \"" << c.text << "\"");
  }
  BOOST_TEST(from_json(sentencepiece_json()).encode_with_special_tokens("ab") == Ids({1, 265}));
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
    BOOST_TEST(from_json(config).encode("xy a") == c.ids, "byte_fallback " << c.byte_fallback << ", fuse_unk " << c.fuse_unk);
  }
  json config = sentencepiece_json();
  config["model"]["byte_fallback"] = false;
  config["model"]["unk_token"] = nullptr;  // `tokenizers` would drop the character
  BOOST_CHECK_EXCEPTION(from_json(config).encode("ax"), memsweep::Error, [](const memsweep::Error& e) {
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
  const Tokenizer tokenizer = from_json(sentencepiece_json());
  for (const Case& c : cases) BOOST_TEST(tokenizer.decode(c.ids) == c.text);
  for (const std::string text : {"ab b a", "a\xC3\xA9 </s>", "b  a "}) BOOST_TEST(tokenizer.decode(tokenizer.encode(text)) == text);
}

BOOST_AUTO_TEST_CASE(sentencepiece_hash_covers_its_pipeline) {
  const json config = sentencepiece_json();
  const std::string hash = from_json(config).content_hash();
  BOOST_TEST(hash == "9f4239fd0b746396f03595b1a2f3856f8a7b5ff5486385167241e6053d0e3a9e");
  json no_fallback = config, first = with_metaspace(config, "first", false), split = with_metaspace(config, "first", true),
       other_strip = config;
  no_fallback["model"]["byte_fallback"] = false;
  json no_fallback_no_fuse = no_fallback, no_fallback_no_unk = no_fallback;
  no_fallback_no_fuse["model"]["fuse_unk"] = false;
  no_fallback_no_unk["model"]["unk_token"] = nullptr;
  other_strip["decoder"]["decoders"][3]["start"] = 0;
  std::set<std::string> hashes{hash};
  for (const json& different : {no_fallback, no_fallback_no_fuse, no_fallback_no_unk, first, split, other_strip})
    BOOST_TEST(hashes.insert(from_json(different).content_hash()).second);
  // With a <0xNN> token for every byte (this vocabulary has them) no character becomes unk: unk_token and fuse_unk
  // change no id, and not the hash.
  json no_fuse = config, no_unk = config;
  no_fuse["model"]["fuse_unk"] = false;
  no_unk["model"]["unk_token"] = nullptr;
  BOOST_TEST(from_json(no_fuse).content_hash() == hash);
  BOOST_TEST(from_json(no_unk).content_hash() == hash);
  json offsets_only = config;  // the pair template adds nothing to a single text
  offsets_only["post_processor"]["pair"] = json::array();
  BOOST_TEST(from_json(offsets_only).content_hash() == hash);
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
    BOOST_TEST(error_message([&] { from_json(config); }) == c.message);
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
