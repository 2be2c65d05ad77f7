#pragma once
// The BPE model of byte-level tokenizers, internal to memsweep_tokenizer: merges a pre-tokenized word
// the way `tokenizers` does (lowest merge rank first, leftmost first among equal ranks), with a cache.
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace memsweep::tokenizer_detail {

class BpeModel {
 public:
  // vocab: byte-level token spelling -> id; merges in rank order. `origin` names the source in errors
  // (a merge whose parts or result are not in the vocabulary is an Error, as in `tokenizers`).
  // ignore_merges: a word that is itself in the vocabulary is one token without merging.
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           bool ignore_merges, const std::string& origin);

  // Appends the ids of one pre-tokenized word given as raw bytes (not yet in byte-level spelling).
  // Throws Error when a byte's symbol is not in the vocabulary.
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];  // -1: the byte's symbol is not in the vocabulary
  bool ignore_merges_;

  // Words repeat a lot in text; the cache is bounded and emptied when full.
  static constexpr size_t kCacheCapacity = 200000;
  static constexpr size_t kMaxCachedWordBytes = 128;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace memsweep::tokenizer_detail
