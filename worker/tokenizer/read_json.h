#pragma once
// Reading the parts of a tokenizer.json, internal to memsweep_tokenizer: helpers whose errors start with the file
// (`origin`) and name the key path (`where`), and the readers of the steps SentencePiece-style BPE puts around the model.
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "worker/tokenizer/pipeline.h"

namespace memsweep::tokenizer_detail {

[[noreturn]] void fail(const std::string& origin, const std::string& message);
// Error for a key of `object` that is not in `known` (memsweep does not implement it).
void check_keys(const nlohmann::json& object, const std::set<std::string>& known, const std::string& where, const std::string& origin);
// object[key], an Error when it is missing or not of `type`.
const nlohmann::json& require(const nlohmann::json& object, const std::string& key, nlohmann::json::value_t type,
                              const std::string& where, const std::string& origin);
bool optional_bool(const nlohmann::json& object, const std::string& key, bool fallback, const std::string& where, const std::string& origin);
void require_false(const nlohmann::json& object, const std::string& key, const std::string& where, const std::string& origin);
void require_null_or_empty(const nlohmann::json& object, const std::string& key, const std::string& where, const std::string& origin);
// The "type" of a component (an object).
std::string type_of(const nlohmann::json& object, const std::string& where, const std::string& origin);

// The normalizer: NFC, Prepend, Replace (of a non-empty string), or a Sequence of them.
std::vector<NormalizerStep> read_normalizer(const nlohmann::json& normalizer, const std::string& origin);
// The Metaspace pre-tokenizer, as `tokenizers` reads it: prepend_scheme "always" and split true when absent, the older
// add_prefix_space, when false, only with prepend_scheme "never".
Metaspace read_metaspace(const nlohmann::json& metaspace, const std::string& origin);
// The decoder of SentencePiece-style BPE: Replace, ByteFallback, Fuse, Strip, or a Sequence of them.
std::vector<DecoderStep> read_decoder_steps(const nlohmann::json& decoder, const std::string& origin);

}  // namespace memsweep::tokenizer_detail
