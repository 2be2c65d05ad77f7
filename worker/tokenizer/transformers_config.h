#pragma once
// What transformers' AutoTokenizer (5.x) makes of a tokenizer folder, internal to memsweep_tokenizer: for some
// tokenizer classes it keeps only parts of tokenizer.json and builds the rest from tokenizer_config.json.
#include <nlohmann/json.hpp>
#include <string>

namespace memsweep::tokenizer_detail {

// Rewrites a parsed tokenizer.json as transformers 5.x loads it beside `config` (its tokenizer_config.json; `origin`
// names that file in errors). tokenizer_class GPT2Tokenizer / GPT2TokenizerFast (OLMo 2's folders): the file's
// vocabulary, merges and added tokens in GPT-2's pipeline — no normalizer, ByteLevel pre-tokenizer (its regex, the
// config's add_prefix_space, default false), plain BPE (no ignore_merges), ByteLevel decoder, no post-processor
// (add_bos_token / add_eos_token true: Error). LlamaTokenizer / LlamaTokenizerFast (Llama 2, Mistral):
// tokenizer.json's vocabulary, merges, added tokens and post-processor stay; there is no normalizer; the pre-tokenizer is
// Metaspace("▁", split false) with prepend_scheme "first" ("always" when legacy is true, "never" when add_prefix_space
// is false); the model is BPE with byte_fallback and fuse_unk and no unk_token; the decoder is Replace("▁" -> " "),
// ByteFallback, Fuse and, unless add_prefix_space is false, Strip(" ", 1, 0). Any other class leaves it as it is.
void apply_transformers_tokenizer_config(nlohmann::json& tokenizer, const nlohmann::json& config, const std::string& origin);

}  // namespace memsweep::tokenizer_detail
