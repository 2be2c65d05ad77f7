#pragma once
// Byte-level BPE tokenizers (GPT-2, GPT-NeoX / Pythia, Llama 3, Qwen2, OLMo 2) and SentencePiece-style BPE ones (Llama 2,
// Mistral), giving the same ids and text as Hugging Face `tokenizers` for the features memsweep accepts; any other
// tokenizer.json feature is refused with an Error naming it.
// See worker/tokenizer/README.md for what is supported, invalid UTF-8 handling and the hash definition.
//
// A Tokenizer is immutable after loading and cheap to copy (shared state). encode/decode may be called
// from several threads at once.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memsweep {

class Tokenizer {
 public:
  // path: a tokenizer.json file (read as `tokenizers` reads it), a directory with tokenizer.json (read as transformers'
  // AutoTokenizer reads the directory: see README, "What loads"), or a directory with vocab.json + merges.txt (GPT-2
  // layout). Errors name the file and the key.
  static Tokenizer load(const std::string& path);
  // The same from contents already in memory; `origin` names the source in error messages.
  static Tokenizer from_tokenizer_json(const std::string& json_text, const std::string& origin);
  static Tokenizer from_vocab_and_merges(const std::string& vocab_json, const std::string& merges_txt,
                                         const std::string& vocab_origin, const std::string& merges_origin);

  // Text to ids. Ill-formed UTF-8 is first repaired with replace_invalid_utf8 (so the ids are those
  // `tokenizers` gives for bytes.decode('utf-8', 'replace')). Throws Error when a byte has no token.
  std::vector<int32_t> encode(std::string_view utf8) const;
  // The same with the post-processor's special tokens around it (Llama 3: <|begin_of_text|> first), as
  // `tokenizers`' encode(text, add_special_tokens=True); equal to encode() for GPT-2 and GPT-NeoX.
  std::vector<int32_t> encode_with_special_tokens(std::string_view utf8) const;
  // Ids to bytes, special tokens included. Byte-level: the bytes can be ill-formed UTF-8 when the ids cut a character;
  // `tokenizers`' decode(ids, skip_special_tokens=False) equals replace_invalid_utf8 of them. SentencePiece-style: that
  // string itself (the decoder's steps; U+FFFD per <0xNN> token of a run that is not UTF-8).
  // Throws Error naming the first id that is not in the tokenizer.
  std::string decode(const std::vector<int32_t>& ids) const;

  // Lowercase hex SHA-256 of the canonical form (see README): equal for the same tokenizer however stored.
  std::string content_hash() const;
  // One past the highest id (vocabulary and added tokens).
  int32_t vocab_size() const;
  // The id of a token as spelled in the vocabulary (byte-level form, e.g. "Ġthe") or of an added token.
  std::optional<int32_t> token_id(std::string_view token) const;
  // The id of "<|endoftext|>", the end-of-text token of GPT-2 and GPT-NeoX, when present.
  std::optional<int32_t> eos_id() const;
  // The first special token the post-processor puts before a text (Llama 2's and Mistral's <s>, Llama 3's
  // <|begin_of_text|>), when it puts one.
  std::optional<int32_t> bos_id() const;

  struct State;

 private:
  explicit Tokenizer(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

// A model's tokenizer, the one rule every command follows: `given` (a study's `tokenizer` key, --tokenizer) when not
// empty, else the model folder when it holds tokenizer.json or vocab.json + merges.txt, else "" (none).
std::string model_tokenizer_path(const std::string& model_dir, const std::string& given);

// Replaces each maximal ill-formed subsequence with U+FFFD (Unicode §3.9 "substitution of maximal
// subparts"), as Python's bytes.decode('utf-8', 'replace') and Rust's String::from_utf8_lossy do.
std::string replace_invalid_utf8(std::string_view bytes);

}  // namespace memsweep
