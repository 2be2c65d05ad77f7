#pragma once
// What a loaded Tokenizer holds, internal to memsweep_tokenizer (load.cpp builds it, tokenizer.cpp uses it).
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "worker/tokenizer/bpe.h"
#include "worker/tokenizer/pipeline.h"
#include "worker/tokenizer/text.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {
namespace tokenizer_detail {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool normalized;  // matched on normalized text (as written in the file; the same as raw text without a normalizer)
};

// Finds added tokens in text, leftmost first and longest among those starting at the same byte, like
// the Aho-Corasick LeftmostLongest search of `tokenizers`. A byte trie: added tokens are few.
class AddedTokenMatcher {
 public:
  void add(const std::string& content, int32_t id);
  bool empty() const { return nodes_.size() <= 1; }
  // Calls on_text for each non-empty stretch between matches and on_token for each match, in order.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_text,
             const std::function<void(int32_t)>& on_token) const;

 private:
  struct Node {
    std::array<int32_t, 256> children;
    int32_t id = -1;
    Node() { children.fill(-1); }
  };
  std::vector<Node> nodes_{1};
};

}  // namespace tokenizer_detail

struct Tokenizer::State {
  std::unique_ptr<tokenizer_detail::BpeModel> model;
  tokenizer_detail::BpeOptions bpe;                          // byte_level: a ByteLevel pre-tokenizer (alone or after a Split)
  std::vector<tokenizer_detail::NormalizerStep> normalizer;  // empty for none
  bool add_prefix_space = false;                             // ByteLevel's
  bool use_regex = true;                                     // ByteLevel's
  std::optional<tokenizer_detail::Metaspace> metaspace;      // SentencePiece-style: the pre-tokenizer, if any
  std::vector<tokenizer_detail::DecoderStep> decoder;        // SentencePiece-style; empty for byte-level (ByteLevel decoder)
  std::vector<std::pair<std::string, std::string>> merges;  // kept for the content hash
  std::vector<tokenizer_detail::AddedToken> added_tokens;   // sorted by id
  std::unordered_map<std::string, int32_t> added_ids;       // content -> id
  tokenizer_detail::AddedTokenMatcher raw_matcher;          // tokens with normalized: false (or no normalizer)
  tokenizer_detail::AddedTokenMatcher normalized_matcher;   // tokens with normalized: true, content normalized
  tokenizer_detail::PreTokenizerRegex regex;               // ByteLevel's (GPT-2's), when use_regex
  std::string split_pattern;                                // a Split pre-tokenizer's (Oniguruma syntax), "" for none
  bool split_keeps_gaps = true;                             // Isolated: true; Removed with invert: false
  std::unique_ptr<tokenizer_detail::PreTokenizerRegex> split;  // compiled split_pattern
  std::vector<int32_t> prefix_ids, suffix_ids;              // the post-processor's special tokens around a text
  // By id: byte-level, the bytes it decodes to; SentencePiece-style, its spelling, which the decoder steps turn into text.
  std::vector<std::optional<std::string>> decoded;
  std::string content_hash;
};

}  // namespace memsweep
