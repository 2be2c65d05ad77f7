// Loading tokenizer.json and vocab.json + merges.txt into Tokenizer::State. Strict: a key or value that
// would make `tokenizers` produce different ids or text than memsweep implements is an Error naming it.
#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/tokenizer/read_json.h"
#include "worker/tokenizer/state.h"
#include "worker/tokenizer/text.h"
#include "worker/tokenizer/transformers_config.h"

namespace memsweep {
namespace {

using nlohmann::json;
using tokenizer_detail::AddedToken;
using tokenizer_detail::check_keys;
using tokenizer_detail::fail;
using tokenizer_detail::optional_bool;
using tokenizer_detail::read_decoder_steps;
using tokenizer_detail::read_metaspace;
using tokenizer_detail::read_normalizer;
using tokenizer_detail::require;
using tokenizer_detail::require_false;
using tokenizer_detail::require_null_or_empty;
using tokenizer_detail::type_of;
using tokenizer_detail::DecoderStep;
using tokenizer_detail::Metaspace;
using tokenizer_detail::NormalizerStep;

struct Options {
  tokenizer_detail::BpeOptions bpe;  // unk_id is resolved from unk_token
  std::string unk_token;             // "" for none
  std::vector<NormalizerStep> normalizer;
  bool add_prefix_space = false;
  bool use_regex = true;
  std::optional<Metaspace> metaspace;
  std::vector<DecoderStep> decoder;
  std::string split_pattern;  // a Split pre-tokenizer's regex, "" for none
  bool split_keeps_gaps = true;
  std::vector<int32_t> prefix_ids, suffix_ids;  // TemplateProcessing's special tokens around a single text
};

std::unordered_map<std::string, int32_t> read_vocab(const json& vocab, const std::string& where, const std::string& origin) {
  if (!vocab.is_object()) fail(origin, "\"" + where + "\" must be an object of token: id, found " + vocab.type_name());
  std::unordered_map<std::string, int32_t> result;
  std::unordered_map<int32_t, std::string> token_of_id;
  for (const auto& item : vocab.items()) {
    if (!item.value().is_number_integer() || item.value().get<int64_t>() < 0 || item.value().get<int64_t>() > INT32_MAX)
      fail(origin, "\"" + where + "\" maps \"" + item.key() + "\" to " + item.value().dump() + ", not an id");
    int32_t id = item.value().get<int32_t>();
    auto [previous, inserted] = token_of_id.emplace(id, item.key());
    if (!inserted) fail(origin, "\"" + where + "\" gives id " + std::to_string(id) + " to both \"" + previous->second + "\" and \"" + item.key() + "\"");
    result.emplace(item.key(), id);
  }
  return result;
}

std::pair<std::string, std::string> split_merge(const std::string& line, const std::string& where, const std::string& origin) {
  size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size() || line.find(' ', space + 1) != std::string::npos)
    fail(origin, where + " is \"" + line + "\"; expected two tokens separated by one space");
  return {line.substr(0, space), line.substr(space + 1)};
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw Error("SHA-256 of the tokenizer's canonical form failed (OpenSSL EVP_Digest)");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += {kHex[digest[i] >> 4], kHex[digest[i] & 15]};
  return hex;
}

// Everything that decides ids and decoded bytes, nothing else (not the file layout, key order, offsets
// options or post-processor flags): see README.md, "Identity".
json normalizer_form(const std::vector<NormalizerStep>& steps) {
  if (steps.empty()) return nullptr;
  if (steps.size() == 1 && steps[0].kind == NormalizerStep::Kind::nfc) return "NFC";  // v1's form
  json form = json::array();
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::nfc: form.push_back({"NFC"}); break;
      case NormalizerStep::Kind::prepend: form.push_back({"Prepend", step.content}); break;
      case NormalizerStep::Kind::replace: form.push_back({"Replace", step.pattern, step.content}); break;
    }
  }
  return form;
}

json decoder_form(const std::vector<DecoderStep>& steps) {
  json form = json::array();
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::replace: form.push_back({"Replace", step.pattern, step.content}); break;
      case DecoderStep::Kind::byte_fallback: form.push_back({"ByteFallback"}); break;
      case DecoderStep::Kind::fuse: form.push_back({"Fuse"}); break;
      case DecoderStep::Kind::strip: form.push_back({"Strip", step.content, step.start, step.stop}); break;
    }
  }
  return form;
}

std::string canonical_form(const Tokenizer::State& state) {
  std::vector<std::pair<int32_t, std::string>> vocab;
  for (const auto& [token, id] : state.model->vocab()) vocab.emplace_back(id, token);
  std::sort(vocab.begin(), vocab.end());
  const bool byte_level = state.bpe.byte_level;
  json canonical = {{"format", "memsweep.tokenizer.v1"}, {"model", byte_level ? "BPE, byte-level" : "BPE, characters"},
                    {"normalizer", normalizer_form(state.normalizer)}, {"ignore_merges", state.bpe.ignore_merges},
                    {"vocab", json::array()}, {"merges", json::array()}, {"added_tokens", json::array()}};
  for (const auto& [id, token] : vocab) canonical["vocab"].push_back({token, id});
  for (const auto& [left, right] : state.merges) canonical["merges"].push_back({left, right});
  for (const AddedToken& token : state.added_tokens)
    canonical["added_tokens"].push_back({token.id, token.content, token.special, token.normalized && !state.normalizer.empty()});
  if (byte_level) {
    canonical["add_prefix_space"] = state.add_prefix_space;
    canonical["use_regex"] = state.use_regex;
  } else {
    // SentencePiece-style BPE, after v1's byte-level tokenizers: its own keys, so theirs stay as they were.
    canonical["byte_fallback"] = state.bpe.byte_fallback;
    // With a <0xNN> token for every byte no character becomes unk: the unk token and fuse_unk decide nothing then
    // (transformers drops Mistral's unk_token, which changes no id).
    if (!state.model->falls_back_on_every_byte()) {
      canonical["unk"] = state.bpe.unk_id < 0 ? json(nullptr) : json(state.bpe.unk_id);
      canonical["fuse_unk"] = state.bpe.fuse_unk;
    }
    canonical["metaspace"] = nullptr;
    if (state.metaspace) {
      const char* schemes[] = {"always", "first", "never"};
      canonical["metaspace"] = {{"replacement", state.metaspace->replacement},
                                {"prepend_scheme", schemes[static_cast<int>(state.metaspace->prepend)]},
                                {"split", state.metaspace->split}};
    }
    canonical["decoder"] = decoder_form(state.decoder);
  }
  // Added after v1's tokenizers, so present only where used: their hashes stay what they were.
  if (!state.split_pattern.empty()) canonical["split"] = {{"pattern", state.split_pattern}, {"keep_gaps", state.split_keeps_gaps}};
  if (!state.prefix_ids.empty() || !state.suffix_ids.empty())
    canonical["special_tokens_around"] = {{"prefix", state.prefix_ids}, {"suffix", state.suffix_ids}};
  return canonical.dump();
}

// A Split pre-tokenizer: its regex and whether the gaps between matches are words too.
void read_split(const json& split, const std::string& where, const std::string& origin, Options& options) {
  check_keys(split, {"type", "pattern", "behavior", "invert"}, where, origin);
  const json& pattern = require(split, "pattern", json::value_t::object, where, origin);
  if (!pattern.contains("Regex") || !pattern["Regex"].is_string() || pattern.size() != 1)
    fail(origin, "\"" + where + "pattern\" is " + pattern.dump() + "; memsweep implements only {\"Regex\": \"...\"}");
  options.split_pattern = pattern["Regex"].get<std::string>();
  if (options.split_pattern.empty()) fail(origin, "\"" + where + "pattern.Regex\" is empty");
  const std::string behavior = require(split, "behavior", json::value_t::string, where, origin).get<std::string>();
  const bool invert = optional_bool(split, "invert", false, where, origin);
  if (behavior == "Isolated" && !invert) options.split_keeps_gaps = true;
  else if (behavior == "Removed" && invert) options.split_keeps_gaps = false;
  else
    fail(origin, "\"" + where + "behavior\" is \"" + behavior + "\" with invert " + (invert ? "true" : "false") +
                     "; memsweep implements Isolated (invert false) and Removed (invert true)");
}

// A ByteLevel pre-tokenizer after a Split: it only maps bytes to symbols (no regex of its own, no prefix space).
void read_byte_level_after_split(const json& byte_level, const std::string& where, const std::string& origin) {
  check_keys(byte_level, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, where, origin);
  if (optional_bool(byte_level, "use_regex", true, where, origin) || optional_bool(byte_level, "add_prefix_space", false, where, origin))
    fail(origin, "\"" + where + "\" after a Split must have use_regex and add_prefix_space false; memsweep implements only that");
}

// TemplateProcessing: the special tokens its `single` template puts before and after the text ($A). `pair` is not
// read: memsweep never encodes pairs.
void read_template(const json& processor, const std::string& where, const std::string& origin, Options& options) {
  check_keys(processor, {"type", "single", "pair", "special_tokens"}, where, origin);
  const json& single = require(processor, "single", json::value_t::array, where, origin);
  const json& specials = require(processor, "special_tokens", json::value_t::object, where, origin);
  bool seen_text = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string at = where + "single[" + std::to_string(i) + "]";
    const json& item = single[i];
    if (item.is_object() && item.size() == 1 && item.contains("Sequence") && item["Sequence"].is_object() &&
        item["Sequence"].value("id", "") == "A" && !seen_text) {
      seen_text = true;
      continue;
    }
    if (!item.is_object() || item.size() != 1 || !item.contains("SpecialToken") || !item["SpecialToken"].is_object() ||
        !item["SpecialToken"].contains("id") || !item["SpecialToken"]["id"].is_string())
      fail(origin, "\"" + at + "\" is " + item.dump() + "; memsweep implements a single template of special tokens around {\"Sequence\": {\"id\": \"A\"}}");
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.contains(name) || !specials[name].is_object() || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
      fail(origin, "\"" + at + "\" names the special token \"" + name + "\", which \"" + where + "special_tokens\" does not give ids");
    for (const json& id : specials[name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        fail(origin, "\"" + where + "special_tokens." + name + ".ids\" holds " + id.dump() + ", not an id");
      (seen_text ? options.suffix_ids : options.prefix_ids).push_back(id.get<int32_t>());
    }
  }
  if (!seen_text) fail(origin, "\"" + where + "single\" has no {\"Sequence\": {\"id\": \"A\"}}: where would the text go?");
}

std::shared_ptr<Tokenizer::State> build_state(std::unordered_map<std::string, int32_t> vocab,
                                              std::vector<std::pair<std::string, std::string>> merges,
                                              std::vector<AddedToken> added_tokens, const Options& options,
                                              const std::string& origin) {
  auto state = std::make_shared<Tokenizer::State>();
  state->bpe = options.bpe;
  if (!options.unk_token.empty()) {
    auto unk = vocab.find(options.unk_token);
    if (unk == vocab.end()) fail(origin, "\"model.unk_token\" is \"" + options.unk_token + "\", which is not in the vocabulary");
    state->bpe.unk_id = unk->second;
  }
  state->normalizer = options.normalizer;
  state->add_prefix_space = options.add_prefix_space;
  state->use_regex = options.use_regex;
  state->metaspace = options.metaspace;
  state->decoder = options.decoder;
  state->split_pattern = options.split_pattern;
  state->split_keeps_gaps = options.split_keeps_gaps;
  if (!options.split_pattern.empty()) {
    try {
      state->split = std::make_unique<tokenizer_detail::PreTokenizerRegex>(options.split_pattern, options.split_keeps_gaps);
    } catch (const Error& e) {
      fail(origin, std::string("pre_tokenizer Split: ") + e.what());
    }
  }
  state->prefix_ids = options.prefix_ids;
  state->suffix_ids = options.suffix_ids;

  int32_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max(size, id + 1);
  std::sort(added_tokens.begin(), added_tokens.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  for (const AddedToken& token : added_tokens) {
    // `tokenizers` would silently use the vocabulary's id; a file where they differ is refused.
    auto in_vocab = vocab.find(token.content);
    if (in_vocab != vocab.end() && in_vocab->second != token.id)
      fail(origin, "added token \"" + token.content + "\" has id " + std::to_string(token.id) +
                       " but the vocabulary gives it id " + std::to_string(in_vocab->second));
    if (!state->added_ids.emplace(token.content, token.id).second)
      fail(origin, "added token \"" + token.content + "\" appears twice");
    size = std::max(size, token.id + 1);
  }
  // The id table is dense: a file whose ids run far beyond its number of tokens (a typo, or a hostile file)
  // would have it allocate gigabytes (found by fuzz_tokenizer).
  const int64_t entries = int64_t(vocab.size() + added_tokens.size());
  if (int64_t(size) > 4 * entries + 65536)
    fail(origin, "token ids go up to " + std::to_string(size - 1) + " for only " + std::to_string(entries) +
                     " tokens: ids are expected to run from 0 without large gaps");
  state->decoded.resize(static_cast<size_t>(size));
  // Byte-level: a token decodes to the bytes its characters spell in the byte-level map; one with a character outside
  // the map (e.g. an added token made of real spaces) to its own UTF-8, as `tokenizers`' decoder. SentencePiece-style:
  // its spelling goes to the decoder steps.
  auto decoded_bytes = [&](const std::string& token) {
    return options.bpe.byte_level ? tokenizer_detail::bytes_of_symbols(token).value_or(token) : token;
  };
  for (const auto& [token, id] : vocab) state->decoded[static_cast<size_t>(id)] = decoded_bytes(token);
  for (size_t i = 1; i < added_tokens.size(); ++i)
    if (added_tokens[i].id == added_tokens[i - 1].id)
      fail(origin, "added tokens \"" + added_tokens[i - 1].content + "\" and \"" + added_tokens[i].content +
                       "\" share id " + std::to_string(added_tokens[i].id));
  for (const AddedToken& token : added_tokens) {
    auto& slot = state->decoded[static_cast<size_t>(token.id)];
    if (slot && vocab.find(token.content) == vocab.end())
      fail(origin, "added token \"" + token.content + "\" has id " + std::to_string(token.id) + ", already a vocabulary token's id");
    slot = decoded_bytes(token.content);
    if (token.content.empty()) continue;  // never matched, as in `tokenizers`
    if (token.normalized && !options.normalizer.empty())
      state->normalized_matcher.add(tokenizer_detail::normalize(options.normalizer, token.content), token.id);
    else
      state->raw_matcher.add(token.content, token.id);
  }
  for (int32_t id : options.prefix_ids)
    if (id >= size || !state->decoded[static_cast<size_t>(id)]) fail(origin, "the post-processor adds id " + std::to_string(id) + ", which no token has");
  for (int32_t id : options.suffix_ids)
    if (id >= size || !state->decoded[static_cast<size_t>(id)]) fail(origin, "the post-processor adds id " + std::to_string(id) + ", which no token has");
  state->model = std::make_unique<tokenizer_detail::BpeModel>(std::move(vocab), merges, state->bpe, origin);
  state->merges = std::move(merges);
  state->added_tokens = std::move(added_tokens);
  state->content_hash = sha256_hex(canonical_form(*state));
  return state;
}

// A parsed tokenizer.json.
std::shared_ptr<Tokenizer::State> read_tokenizer_json(const json& root, const std::string& origin) {
  // A value of the right JSON type can still be out of range for its C++ type (a number beyond 64 bits, found by
  // fuzzing): the JSON library's exceptions become memsweep::Error like every other bad input.
  try {
    if (!root.is_object()) fail(origin, "a tokenizer.json must hold an object, found " + std::string(root.type_name()));
    check_keys(root, {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"}, "", origin);
    for (const char* key : {"truncation", "padding"})
      if (root.contains(key) && !root[key].is_null())
        fail(origin, "\"" + std::string(key) + "\" is set; memsweep does not implement " + key + " (it must be null)");

    Options options;
    if (root.contains("normalizer") && !root["normalizer"].is_null()) options.normalizer = read_normalizer(root["normalizer"], origin);

    // A ByteLevel pre-tokenizer (alone or after a Split) makes byte-level BPE; Metaspace or none SentencePiece-style BPE,
    // whose words are characters (no pre-tokenizer: each piece between added tokens is one word).
    const json& pre_tokenizer = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json();
    const std::string pre_type = pre_tokenizer.is_null() ? "" : type_of(pre_tokenizer, "pre_tokenizer", origin);
    options.bpe.byte_level = pre_type == "ByteLevel" || pre_type == "Sequence";
    if (pre_type == "Metaspace") {
      options.metaspace = read_metaspace(pre_tokenizer, origin);
    } else if (pre_type == "ByteLevel") {
      // trim_offsets only changes offsets, which memsweep does not produce.
      check_keys(pre_tokenizer, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, "pre_tokenizer.", origin);
      options.add_prefix_space = require(pre_tokenizer, "add_prefix_space", json::value_t::boolean, "pre_tokenizer.", origin).get<bool>();
      options.use_regex = optional_bool(pre_tokenizer, "use_regex", true, "pre_tokenizer.", origin);
    } else if (pre_type == "Sequence") {
      // Llama 3, Qwen2, OLMo 2: a Split by the family's regex, then ByteLevel mapping bytes to symbols.
      check_keys(pre_tokenizer, {"type", "pretokenizers"}, "pre_tokenizer.", origin);
      const json& steps = require(pre_tokenizer, "pretokenizers", json::value_t::array, "pre_tokenizer.", origin);
      if (steps.size() != 2 || type_of(steps[0], "pre_tokenizer.pretokenizers[0]", origin) != "Split" ||
          type_of(steps[1], "pre_tokenizer.pretokenizers[1]", origin) != "ByteLevel")
        fail(origin, "\"pre_tokenizer.pretokenizers\" is " + steps.dump().substr(0, 200) +
                         "; memsweep implements a Sequence of exactly [Split, ByteLevel]");
      read_split(steps[0], "pre_tokenizer.pretokenizers[0].", origin, options);
      read_byte_level_after_split(steps[1], "pre_tokenizer.pretokenizers[1].", origin);
      options.use_regex = false;
    } else if (!pre_type.empty()) {
      fail(origin, "pre_tokenizer type \"" + pre_type + "\" is not supported; memsweep implements ByteLevel, a Sequence of Split and ByteLevel, "
                   "Metaspace, or none");
    }

    // A ByteLevel post-processor only trims offsets; TemplateProcessing puts special tokens around a text
    // (encode_with_special_tokens); anything else is refused.
    if (root.contains("post_processor") && !root["post_processor"].is_null()) {
      auto read_processor = [&](const json& processor, const std::string& where) {
        const std::string type = type_of(processor, where, origin);
        if (type == "ByteLevel") check_keys(processor, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, where + ".", origin);
        else if (type == "TemplateProcessing") read_template(processor, where + ".", origin, options);
        else fail(origin, where + " type \"" + type + "\" is not supported; memsweep implements ByteLevel, TemplateProcessing, a Sequence of them, or none");
      };
      const json& processor = root["post_processor"];
      if (type_of(processor, "post_processor", origin) == "Sequence") {
        check_keys(processor, {"type", "processors"}, "post_processor.", origin);
        const json& steps = require(processor, "processors", json::value_t::array, "post_processor.", origin);
        for (size_t i = 0; i < steps.size(); ++i) read_processor(steps[i], "post_processor.processors[" + std::to_string(i) + "]");
      } else {
        read_processor(processor, "post_processor");
      }
    }
    const json& decoder = root.contains("decoder") ? root["decoder"] : json();
    if (decoder.is_null())
      fail(origin, std::string("\"decoder\" is missing or null; memsweep implements ") +
                       (options.bpe.byte_level ? "the ByteLevel decoder with a ByteLevel pre-tokenizer"
                                               : "Replace, ByteFallback, Fuse, Strip and a Sequence of them without a ByteLevel pre-tokenizer"));
    if (options.bpe.byte_level) {
      std::string decoder_type = type_of(decoder, "decoder", origin);
      if (decoder_type != "ByteLevel")
        fail(origin, "decoder type \"" + decoder_type + "\" is not supported with a ByteLevel pre-tokenizer; memsweep implements only ByteLevel there");
      check_keys(decoder, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, "decoder.", origin);
    } else {
      options.decoder = read_decoder_steps(decoder, origin);
    }

    const json& model = require(root, "model", json::value_t::object, "", origin);
    std::string model_type = model.contains("type") ? require(model, "type", json::value_t::string, "model.", origin).get<std::string>() : "BPE";
    if (model_type != "BPE") fail(origin, "model type \"" + model_type + "\" is not supported; memsweep implements only BPE");
    check_keys(model, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                       "byte_fallback", "ignore_merges", "vocab", "merges"}, "model.", origin);
    for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
      require_null_or_empty(model, key, "model.", origin);
    if (options.bpe.byte_level) {
      // Every byte has its symbol in byte-level vocabularies: memsweep refuses what would only act on a missing one.
      require_null_or_empty(model, "unk_token", "model.", origin);
      require_false(model, "byte_fallback", "model.", origin);
      optional_bool(model, "fuse_unk", false, "model.", origin);  // only acts on unk_token, which must be null
    } else {
      if (model.contains("unk_token") && !model["unk_token"].is_null())
        options.unk_token = require(model, "unk_token", json::value_t::string, "model.", origin).get<std::string>();
      options.bpe.byte_fallback = optional_bool(model, "byte_fallback", false, "model.", origin);
      options.bpe.fuse_unk = optional_bool(model, "fuse_unk", false, "model.", origin);
    }
    options.bpe.ignore_merges = optional_bool(model, "ignore_merges", false, "model.", origin);

    auto vocab = read_vocab(require(model, "vocab", json::value_t::object, "model.", origin), "model.vocab", origin);
    std::vector<std::pair<std::string, std::string>> merges;
    const json& merge_list = require(model, "merges", json::value_t::array, "model.", origin);
    for (size_t i = 0; i < merge_list.size(); ++i) {
      const json& merge = merge_list[i];
      std::string where = "model.merges[" + std::to_string(i) + "]";
      if (merge.is_string()) {
        merges.push_back(split_merge(merge.get<std::string>(), where, origin));
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      } else {
        fail(origin, where + " must be \"left right\" or [\"left\", \"right\"], found " + merge.dump());
      }
    }

    std::vector<AddedToken> added_tokens;
    if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
      const json& list = require(root, "added_tokens", json::value_t::array, "", origin);
      for (size_t i = 0; i < list.size(); ++i) {
        std::string where = "added_tokens[" + std::to_string(i) + "].";
        if (!list[i].is_object()) fail(origin, "\"" + where.substr(0, where.size() - 1) + "\" must be an object");
        check_keys(list[i], {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, where, origin);
        for (const char* key : {"single_word", "lstrip", "rstrip"}) require_false(list[i], key, where, origin);
        const json& id = require(list[i], "id", json::value_t::number_integer, where, origin);
        if (id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) fail(origin, "\"" + where + "id\" is " + id.dump() + ", not an id");
        bool special = optional_bool(list[i], "special", false, where, origin);
        added_tokens.push_back(AddedToken{id.get<int32_t>(), require(list[i], "content", json::value_t::string, where, origin).get<std::string>(),
                                          special, optional_bool(list[i], "normalized", !special, where, origin)});
      }
    }
    return build_state(std::move(vocab), std::move(merges), std::move(added_tokens), options, origin);
  } catch (const nlohmann::json::exception& e) {
    throw Error(origin + ": a value in tokenizer.json is not what memsweep expects (" + e.what() + ")");
  }
}

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json(const std::string& json_text, const std::string& origin) {
  return Tokenizer(read_tokenizer_json(parse_json(json_text, origin), origin));
}

Tokenizer Tokenizer::from_vocab_and_merges(const std::string& vocab_json, const std::string& merges_txt,
                                           const std::string& vocab_origin, const std::string& merges_origin) {
  auto vocab = read_vocab(parse_json(vocab_json, vocab_origin), "vocab", vocab_origin);
  std::vector<std::pair<std::string, std::string>> merges;
  size_t start = 0, line_number = 0;
  while (start < merges_txt.size()) {
    size_t end = merges_txt.find('\n', start);
    if (end == std::string::npos) end = merges_txt.size();
    std::string line = merges_txt.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // as Rust's lines(), which `tokenizers` uses
    if (line.rfind("#version", 0) == 0) continue;
    merges.push_back(split_merge(line, "line " + std::to_string(line_number), merges_origin));
  }
  // GPT-2's layout: transformers' GPT2Tokenizer declares <|endoftext|> its special token (never split),
  // which is what the Hub's tokenizer.json for GPT-2 also says.
  std::vector<AddedToken> added_tokens;
  auto eos = vocab.find("<|endoftext|>");
  if (eos != vocab.end()) added_tokens.push_back(AddedToken{eos->second, eos->first, true, false});
  return Tokenizer(build_state(std::move(vocab), std::move(merges), std::move(added_tokens), Options{}, merges_origin));
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(path, error)) return from_tokenizer_json(read_file(path), path);
  fs::path directory(path);
  const fs::path file = directory / "tokenizer.json", config = directory / "tokenizer_config.json";
  if (fs::exists(file, error)) {
    // A folder is read as transformers' AutoTokenizer reads it, which for some tokenizer classes rebuilds parts of
    // tokenizer.json from tokenizer_config.json (Llama 2: see transformers_config.h).
    json root = parse_json(read_file(file.string()), file.string());
    if (fs::exists(config, error))
      tokenizer_detail::apply_transformers_tokenizer_config(root, parse_json(read_file(config.string()), config.string()), config.string());
    return Tokenizer(read_tokenizer_json(root, file.string()));
  }
  fs::path vocab = directory / "vocab.json", merges = directory / "merges.txt";
  if (!fs::exists(vocab, error) || !fs::exists(merges, error))
    throw Error(path + ": a tokenizer directory must hold tokenizer.json, or vocab.json and merges.txt; found neither");
  if (fs::exists(directory / "added_tokens.json", error))
    throw Error((directory / "added_tokens.json").string() + ": added_tokens.json is not supported; give a tokenizer.json instead");
  return from_vocab_and_merges(read_file(vocab.string()), read_file(merges.string()), vocab.string(), merges.string());
}

std::string model_tokenizer_path(const std::string& model_dir, const std::string& given) {
  if (!given.empty()) return given;
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path dir(model_dir);
  if (fs::exists(dir / "tokenizer.json", error) || (fs::exists(dir / "vocab.json", error) && fs::exists(dir / "merges.txt", error)))
    return model_dir;
  return "";
}

}  // namespace memsweep
