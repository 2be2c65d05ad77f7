#include "worker/tokenizer/read_json.h"

#include "worker/base/error.h"
#include "worker/tokenizer/text.h"

namespace memsweep::tokenizer_detail {

using nlohmann::json;

[[noreturn]] void fail(const std::string& origin, const std::string& message) { throw Error(origin + ": " + message); }

void check_keys(const json& object, const std::set<std::string>& known, const std::string& where, const std::string& origin) {
  for (const auto& item : object.items())
    if (!known.count(item.key()))
      fail(origin, "unknown key \"" + where + item.key() + "\"; memsweep does not implement it, so it refuses the file");
}

const json& require(const json& object, const std::string& key, json::value_t type, const std::string& where,
                    const std::string& origin) {
  auto found = object.find(key);
  if (found == object.end()) fail(origin, "missing key \"" + where + key + "\"");
  bool ok = found->type() == type || (type == json::value_t::number_integer && found->is_number_unsigned());
  if (!ok) fail(origin, "\"" + where + key + "\" must be " + json(type).type_name() + ", found " + found->type_name());
  return *found;
}

bool optional_bool(const json& object, const std::string& key, bool fallback, const std::string& where,
                   const std::string& origin) {
  if (!object.contains(key)) return fallback;
  return require(object, key, json::value_t::boolean, where, origin).get<bool>();
}

void require_false(const json& object, const std::string& key, const std::string& where, const std::string& origin) {
  if (optional_bool(object, key, false, where, origin))
    fail(origin, "\"" + where + key + "\" is true; memsweep does not implement " + key);
}

void require_null_or_empty(const json& object, const std::string& key, const std::string& where, const std::string& origin) {
  auto found = object.find(key);
  if (found == object.end() || found->is_null() || (found->is_string() && found->get<std::string>().empty())) return;
  fail(origin, "\"" + where + key + "\" is " + found->dump() + "; memsweep does not implement " + key);
}

std::string type_of(const json& object, const std::string& where, const std::string& origin) {
  if (!object.is_object()) fail(origin, "\"" + where + "\" must be an object or null, found " + object.type_name());
  return require(object, "type", json::value_t::string, where + ".", origin).get<std::string>();
}

namespace {

bool is_one_character(const std::string& text) {
  if (text.empty() || first_invalid_utf8(text)) return false;
  size_t characters = 0;
  for (char c : text) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return characters == 1;
}

std::string one_character(const json& object, const std::string& key, const std::string& where, const std::string& origin) {
  std::string value = require(object, key, json::value_t::string, where, origin).get<std::string>();
  if (!is_one_character(value)) fail(origin, "\"" + where + key + "\" is " + json(value).dump() + "; it must be one character");
  return value;
}

size_t count(const json& object, const std::string& key, const std::string& where, const std::string& origin) {
  const json& value = require(object, key, json::value_t::number_integer, where, origin);
  if (value.get<int64_t>() < 0 || value.get<int64_t>() > 1000000) fail(origin, "\"" + where + key + "\" is " + value.dump() + ", not a count");
  return static_cast<size_t>(value.get<int64_t>());
}

// A Replace (normalizer or decoder): a non-empty string pattern and its replacement.
std::pair<std::string, std::string> read_replace(const json& replace, const std::string& where, const std::string& origin) {
  check_keys(replace, {"type", "pattern", "content"}, where, origin);
  const json& pattern = require(replace, "pattern", json::value_t::object, where, origin);
  if (pattern.size() != 1 || !pattern.contains("String") || !pattern["String"].is_string() || pattern["String"].get<std::string>().empty())
    fail(origin, "\"" + where + "pattern\" is " + pattern.dump() + "; memsweep implements only {\"String\": \"...\"} (not empty)");
  return {pattern["String"].get<std::string>(), require(replace, "content", json::value_t::string, where, origin).get<std::string>()};
}

}  // namespace

std::vector<NormalizerStep> read_normalizer(const json& normalizer, const std::string& origin) {
  auto read_step = [&](const json& step, const std::string& where) -> NormalizerStep {
    const std::string type = type_of(step, where, origin), at = where + ".";
    if (type == "NFC") {
      check_keys(step, {"type"}, at, origin);
      return {NormalizerStep::Kind::nfc, "", ""};
    }
    if (type == "Prepend") {
      check_keys(step, {"type", "prepend"}, at, origin);
      return {NormalizerStep::Kind::prepend, "", require(step, "prepend", json::value_t::string, at, origin).get<std::string>()};
    }
    if (type == "Replace") {
      auto [pattern, content] = read_replace(step, at, origin);
      return {NormalizerStep::Kind::replace, pattern, content};
    }
    fail(origin, where + " type \"" + type + "\" is not supported; memsweep implements NFC, Prepend, Replace, a Sequence of them, or no normalizer");
  };
  if (type_of(normalizer, "normalizer", origin) != "Sequence") return {read_step(normalizer, "normalizer")};
  check_keys(normalizer, {"type", "normalizers"}, "normalizer.", origin);
  const json& steps = require(normalizer, "normalizers", json::value_t::array, "normalizer.", origin);
  std::vector<NormalizerStep> result;
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string where = "normalizer.normalizers[" + std::to_string(i) + "]";
    if (type_of(steps[i], where, origin) == "Sequence") fail(origin, where + " is a Sequence inside a Sequence; memsweep does not implement it");
    result.push_back(read_step(steps[i], where));
  }
  return result;
}

Metaspace read_metaspace(const json& metaspace, const std::string& origin) {
  check_keys(metaspace, {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"}, "pre_tokenizer.", origin);
  Metaspace result;
  result.replacement = one_character(metaspace, "replacement", "pre_tokenizer.", origin);
  const std::string scheme = metaspace.contains("prepend_scheme")
                                 ? require(metaspace, "prepend_scheme", json::value_t::string, "pre_tokenizer.", origin).get<std::string>()
                                 : "always";
  if (scheme == "always") result.prepend = Metaspace::Prepend::always;
  else if (scheme == "first") result.prepend = Metaspace::Prepend::first;
  else if (scheme == "never") result.prepend = Metaspace::Prepend::never;
  else fail(origin, "\"pre_tokenizer.prepend_scheme\" is \"" + scheme + "\"; it must be always, first or never");
  if (!optional_bool(metaspace, "add_prefix_space", true, "pre_tokenizer.", origin) && result.prepend != Metaspace::Prepend::never)
    fail(origin, "\"pre_tokenizer.add_prefix_space\" is false but \"pre_tokenizer.prepend_scheme\" is \"" + scheme + "\" (`tokenizers` refuses this too)");
  result.split = optional_bool(metaspace, "split", true, "pre_tokenizer.", origin);
  return result;
}

std::vector<DecoderStep> read_decoder_steps(const json& decoder, const std::string& origin) {
  auto read_step = [&](const json& step, const std::string& where) -> DecoderStep {
    const std::string type = type_of(step, where, origin), at = where + ".";
    if (type == "Replace") {
      auto [pattern, content] = read_replace(step, at, origin);
      return {DecoderStep::Kind::replace, pattern, content};
    }
    if (type == "ByteFallback" || type == "Fuse") {
      check_keys(step, {"type"}, at, origin);
      return {type == "Fuse" ? DecoderStep::Kind::fuse : DecoderStep::Kind::byte_fallback, "", ""};
    }
    if (type == "Strip") {
      check_keys(step, {"type", "content", "start", "stop"}, at, origin);
      return {DecoderStep::Kind::strip, "", one_character(step, "content", at, origin), count(step, "start", at, origin), count(step, "stop", at, origin)};
    }
    fail(origin, where + " type \"" + type + "\" is not supported without a ByteLevel pre-tokenizer; memsweep implements Replace, "
                 "ByteFallback, Fuse, Strip and a Sequence of them there");
  };
  if (type_of(decoder, "decoder", origin) != "Sequence") return {read_step(decoder, "decoder")};
  check_keys(decoder, {"type", "decoders"}, "decoder.", origin);
  const json& steps = require(decoder, "decoders", json::value_t::array, "decoder.", origin);
  std::vector<DecoderStep> result;
  for (size_t i = 0; i < steps.size(); ++i) result.push_back(read_step(steps[i], "decoder.decoders[" + std::to_string(i) + "]"));
  return result;
}

}  // namespace memsweep::tokenizer_detail
