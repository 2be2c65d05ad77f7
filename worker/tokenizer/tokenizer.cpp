#include "worker/tokenizer/tokenizer.h"

#include "worker/base/error.h"
#include "worker/tokenizer/state.h"

namespace memsweep {
namespace tokenizer_detail {

void AddedTokenMatcher::add(const std::string& content, int32_t id) {
  int32_t node = 0;
  for (char c : content) {
    auto byte = static_cast<unsigned char>(c);
    if (nodes_[static_cast<size_t>(node)].children[byte] < 0) {
      nodes_[static_cast<size_t>(node)].children[byte] = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
    }
    node = nodes_[static_cast<size_t>(node)].children[byte];
  }
  nodes_[static_cast<size_t>(node)].id = id;
}

void AddedTokenMatcher::split(std::string_view text, const std::function<void(std::string_view)>& on_text,
                              const std::function<void(int32_t)>& on_token) const {
  size_t text_start = 0, position = 0;
  while (position < text.size()) {
    int32_t node = 0, match_id = -1;
    size_t match_end = 0;
    for (size_t i = position; i < text.size(); ++i) {
      node = nodes_[static_cast<size_t>(node)].children[static_cast<unsigned char>(text[i])];
      if (node < 0) break;
      if (nodes_[static_cast<size_t>(node)].id >= 0) match_id = nodes_[static_cast<size_t>(node)].id, match_end = i + 1;
    }
    if (match_id < 0) {
      ++position;
      continue;
    }
    if (position > text_start) on_text(text.substr(text_start, position - text_start));
    on_token(match_id);
    text_start = position = match_end;
  }
  if (text_start < text.size()) on_text(text.substr(text_start));
}

}  // namespace tokenizer_detail

Tokenizer::Tokenizer(std::shared_ptr<const State> state) : state_(std::move(state)) {}

// The order of `tokenizers`: added tokens matched on the raw text, then normalization of the pieces in
// between, added tokens matched on the normalized pieces, pre-tokenization of what is left, BPE per word.
std::vector<int32_t> Tokenizer::encode(std::string_view utf8) const {
  std::string repaired;
  if (tokenizer_detail::first_invalid_utf8(utf8)) {
    repaired = replace_invalid_utf8(utf8);
    utf8 = repaired;
  }
  const State& state = *state_;
  std::vector<int32_t> ids;
  auto push_token = [&](int32_t id) { ids.push_back(id); };
  auto encode_word = [&](std::string_view word) { state.model->encode_word(word, ids); };
  auto byte_level = [&](std::string_view piece) {
    std::string prefixed;
    if (state.add_prefix_space && piece.front() != ' ') {
      prefixed = " " + std::string(piece);
      piece = prefixed;
    }
    if (state.use_regex)
      state.regex.split(piece, encode_word);
    else
      encode_word(piece);
  };
  // at_text_start: the piece is where the text begins (not after an added token), for Metaspace's prepend_scheme first.
  auto pre_tokenize = [&](std::string_view piece, bool at_text_start) {
    if (state.metaspace)
      state.metaspace->split_words(piece, at_text_start, encode_word);
    else if (!state.bpe.byte_level)
      encode_word(piece);
    else if (state.split)
      state.split->split(piece, byte_level);
    else
      byte_level(piece);
  };
  auto normalize = [&](std::string_view piece) {
    const bool at_text_start = piece.data() == utf8.data();
    if (state.normalizer.empty()) return pre_tokenize(piece, at_text_start);
    std::string normalized = tokenizer_detail::normalize(state.normalizer, piece);
    auto pre_tokenize_normalized = [&](std::string_view part) { pre_tokenize(part, at_text_start && part.data() == normalized.data()); };
    if (state.normalized_matcher.empty())
      pre_tokenize_normalized(normalized);
    else
      state.normalized_matcher.split(normalized, pre_tokenize_normalized, push_token);
  };
  if (state.raw_matcher.empty())
    normalize(utf8);
  else
    state.raw_matcher.split(utf8, normalize, push_token);
  return ids;
}

std::vector<int32_t> Tokenizer::encode_with_special_tokens(std::string_view utf8) const {
  std::vector<int32_t> ids = state_->prefix_ids, text = encode(utf8);
  ids.insert(ids.end(), text.begin(), text.end());
  ids.insert(ids.end(), state_->suffix_ids.begin(), state_->suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || !state_->decoded[static_cast<size_t>(id)])
      throw Error("cannot decode token id " + std::to_string(id) + ": the tokenizer has no such id (ids are 0.." +
                  std::to_string(vocab_size() - 1) + ")");
    tokens.push_back(*state_->decoded[static_cast<size_t>(id)]);
  }
  return tokenizer_detail::decode_tokens(state_->decoder, std::move(tokens));  // byte-level: no steps, the bytes joined
}

std::string Tokenizer::content_hash() const { return state_->content_hash; }

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(state_->decoded.size()); }

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  std::string key(token);
  auto added = state_->added_ids.find(key);
  if (added != state_->added_ids.end()) return added->second;
  auto found = state_->model->vocab().find(key);
  if (found != state_->model->vocab().end()) return found->second;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::eos_id() const { return token_id("<|endoftext|>"); }

std::optional<int32_t> Tokenizer::bos_id() const {
  if (state_->prefix_ids.empty()) return std::nullopt;
  return state_->prefix_ids.front();
}

}  // namespace memsweep
