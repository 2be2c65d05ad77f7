#include "worker/tokenizer/transformers_config.h"

#include "worker/base/error.h"

namespace memsweep::tokenizer_detail {

void apply_transformers_tokenizer_config(nlohmann::json& tokenizer, const nlohmann::json& config, const std::string& origin) {
  using nlohmann::json;
  if (!config.is_object()) throw Error(origin + ": a tokenizer_config.json must hold an object, found " + config.type_name());
  const json tokenizer_class = config.value("tokenizer_class", json());
  auto flag = [&](const char* key, bool fallback) {
    const json value = config.value(key, json());
    if (value.is_null()) return fallback;
    if (!value.is_boolean()) throw Error(origin + ": \"" + key + "\" must be true, false or null, found " + value.dump());
    return value.get<bool>();
  };
  if (!tokenizer.is_object() || !tokenizer.contains("model") || !tokenizer["model"].is_object()) return;  // refused when read
  if (tokenizer_class == "GPT2Tokenizer" || tokenizer_class == "GPT2TokenizerFast") {
    // GPT-2's pipeline around the file's vocabulary and merges (OLMo 2's Hub folders name this class: its Split regex
    // gives way to GPT-2's).
    for (const char* key : {"add_bos_token", "add_eos_token"})
      if (flag(key, false))
        throw Error(origin + ": \"" + key + "\": true with tokenizer_class " + tokenizer_class.get<std::string>() + " is not supported");
    json& model = tokenizer["model"];
    model = {{"type", "BPE"}, {"vocab", model.value("vocab", json())}, {"merges", model.value("merges", json())}};
    tokenizer["normalizer"] = nullptr;
    tokenizer["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", flag("add_prefix_space", false)},
                                  {"trim_offsets", true}, {"use_regex", true}};
    tokenizer["post_processor"] = nullptr;
    tokenizer["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    return;
  }
  if (tokenizer_class != "LlamaTokenizer" && tokenizer_class != "LlamaTokenizerFast") return;
  // transformers' own defaults: add_prefix_space null means true, legacy absent or null is false.
  const bool add_prefix_space = flag("add_prefix_space", true), legacy = flag("legacy", false);
  const std::string meta = "\xE2\x96\x81";  // ▁
  tokenizer["normalizer"] = nullptr;
  tokenizer["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", meta},
                                {"prepend_scheme", !add_prefix_space ? "never" : legacy ? "always" : "first"}, {"split", false}};
  json& model = tokenizer["model"];
  model = {{"type", "BPE"}, {"vocab", model.value("vocab", json())}, {"merges", model.value("merges", json())},
           {"fuse_unk", true}, {"byte_fallback", true}};
  json decoders = {{{"type", "Replace"}, {"pattern", {{"String", meta}}}, {"content", " "}}, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}};
  if (add_prefix_space) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  tokenizer["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
}

}  // namespace memsweep::tokenizer_detail
