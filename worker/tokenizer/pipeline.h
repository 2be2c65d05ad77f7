#pragma once
// The steps around the BPE model that tokenizer.json files of SentencePiece-style BPE use (Llama 2, Mistral),
// internal to memsweep_tokenizer: normalizer steps (NFC too), the Metaspace pre-tokenizer and the decoder steps, each
// as `tokenizers` applies it.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace memsweep::tokenizer_detail {

// One normalizer: a tokenizer.json's `normalizer`, or one of a Sequence's `normalizers`.
struct NormalizerStep {
  enum class Kind { nfc, prepend, replace };
  Kind kind;
  std::string pattern;  // replace: the string replaced (not empty), every occurrence, leftmost first
  std::string content;  // prepend: what goes before a text that is not empty; replace: the replacement
};
// REQUIRES: `text` is well-formed UTF-8.
std::string normalize(const std::vector<NormalizerStep>& steps, std::string_view text);

// The Metaspace pre-tokenizer: every ' ' becomes `replacement`, which is put before the text (unless it starts with it
// already) always, for the text's first piece only (the piece at offset 0: not after an added token), or never; with
// `split` a word starts at each `replacement` (it goes with what follows it), else the piece is one word.
struct Metaspace {
  enum class Prepend { always, first, never };
  std::string replacement;  // one character
  Prepend prepend = Prepend::always;
  bool split = true;
  void split_words(std::string_view piece, bool at_text_start, const std::function<void(std::string_view)>& on_word) const;
};

// One decoder: a tokenizer.json's `decoder`, or one of a Sequence's `decoders`. Each maps the list of token strings to
// another, as `tokenizers`' decode_chain: replace in each token; byte_fallback turns each run of <0xNN> tokens into
// its bytes when they are well-formed UTF-8, else into one U+FFFD per token; fuse joins all into one; strip removes up
// to `start` leading and `stop` trailing `content` characters of each.
struct DecoderStep {
  enum class Kind { replace, byte_fallback, fuse, strip };
  Kind kind;
  std::string pattern, content;  // replace: pattern -> content; strip: content is one character
  size_t start = 0, stop = 0;
};
// The text of the tokens: the steps in order, then the resulting strings joined.
std::string decode_tokens(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens);

// Every occurrence of `pattern` (not empty) in `text` replaced with `content`, leftmost first, not overlapping.
std::string replace_all(std::string_view text, const std::string& pattern, const std::string& content);

}  // namespace memsweep::tokenizer_detail
