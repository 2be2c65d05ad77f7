#pragma once
// The BPE model, internal to memsweep_tokenizer: merges a pre-tokenized word the way `tokenizers` does (lowest merge
// rank first, leftmost first among equal ranks), with a cache. A word starts as its bytes in GPT-2's byte symbols
// (byte-level BPE) or as its characters (SentencePiece-style BPE: Llama 2, Mistral).
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace memsweep::tokenizer_detail {

struct BpeOptions {
  bool byte_level = true;      // false: a word's first symbols are its characters
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token without merging
  // Characters only: one that is not in the vocabulary becomes the <0xNN> tokens of its UTF-8 bytes (byte_fallback,
  // when the vocabulary has them all), else unk_id (-1: none), consecutive ones one unk_id with fuse_unk.
  bool byte_fallback = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // vocab: token spelling -> id; merges in rank order. `origin` names the source in errors (a merge whose parts or
  // result are not in the vocabulary is an Error, as in `tokenizers`).
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           const BpeOptions& options, const std::string& origin);

  // Appends the ids of one pre-tokenized word: raw bytes for byte-level BPE (not yet in byte-level spelling), well-formed
  // UTF-8 otherwise. Throws Error when a byte's symbol is not in the vocabulary, or a character is not and has neither
  // byte fallback nor an unk token (`tokenizers` would drop it silently).
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  // Characters only: byte_fallback with a <0xNN> token for every byte, so that no character ever becomes unk_id.
  bool falls_back_on_every_byte() const;

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  // The merge of a pair of ids, or nullptr. Merges live in an open-addressing table (linear probing, at most half
  // full): the lookups are most of the time of merging, and std::unordered_map's chains made them twice as slow.
  const Merge* find_merge(int32_t left, int32_t right) const;
  void add_merge(int32_t left, int32_t right, Merge merge);
  size_t merge_slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> merge_shift_); }
  struct MergeSlot {
    uint64_t key;  // kNoPair: empty
    Merge merge;
  };
  static constexpr uint64_t kNoPair = ~uint64_t(0);  // ids are never negative, so no pair has this key
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  void byte_symbols_of(std::string_view word, std::vector<int32_t>& symbols) const;
  void characters_of(std::string_view word, std::vector<int32_t>& symbols) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<MergeSlot> merge_slots_;
  int merge_shift_ = 63;  // 64 - log2(slots)
  BpeOptions options_;
  int32_t byte_ids_[256];           // byte-level: the id of each byte's symbol, -1 when it is not in the vocabulary
  int32_t byte_fallback_ids_[256];  // characters: the id of <0xNN>, -1 when absent
  int32_t ascii_ids_[128];          // characters: the id of each one-byte character, -1 when absent (most text is ASCII)

  // Words repeat a lot in text; the cache is bounded and emptied when full.
  static constexpr size_t kCacheCapacity = 200000;
  static constexpr size_t kMaxCachedWordBytes = 128;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace memsweep::tokenizer_detail
