#include "worker/tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>
#include <queue>

#include "worker/base/error.h"
#include "worker/tokenizer/text.h"

namespace memsweep::tokenizer_detail {

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options,
                   const std::string& origin)
    : vocab_(std::move(vocab)), options_(options) {
  const auto& symbols = byte_symbols();
  for (int byte = 0; byte < 256; ++byte) {
    auto found = vocab_.find(symbols[byte]);
    byte_ids_[byte] = found == vocab_.end() ? -1 : found->second;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);  // `tokenizers`' spelling: two upper-case hex digits
    found = vocab_.find(name);
    byte_fallback_ids_[byte] = found == vocab_.end() ? -1 : found->second;
    if (byte < 128) {
      found = vocab_.find(std::string(1, static_cast<char>(byte)));
      ascii_ids_[byte] = found == vocab_.end() ? -1 : found->second;
    }
  }
  size_t slots = 2;
  while (slots < 2 * merges.size()) slots *= 2;
  merge_slots_.assign(slots, MergeSlot{kNoPair, Merge{0, 0}});
  while ((size_t(1) << (64 - merge_shift_)) < slots) --merge_shift_;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    // Named references, not a structured binding: C++17 lambdas cannot capture bindings.
    const std::string& left = merges[rank].first;
    const std::string& right = merges[rank].second;
    auto id_of = [&](const std::string& part) {
      auto found = vocab_.find(part);
      if (found == vocab_.end())
        throw Error(origin + ": merge " + std::to_string(rank) + " (\"" + left + " " + right + "\") uses \"" + part +
                    "\", which is not in the vocabulary");
      return found->second;
    };
    int32_t left_id = id_of(left), right_id = id_of(right), merged_id = id_of(left + right);
    // A repeated merge takes the rank of its last occurrence, as `tokenizers` builds its map.
    add_merge(left_id, right_id, Merge{static_cast<int32_t>(rank), merged_id});
  }
}

bool BpeModel::falls_back_on_every_byte() const {
  return options_.byte_fallback && std::all_of(std::begin(byte_fallback_ids_), std::end(byte_fallback_ids_), [](int32_t id) { return id >= 0; });
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  for (size_t slot = merge_slot(key);; slot = (slot + 1) & mask) {
    if (merge_slots_[slot].key == key) return &merge_slots_[slot].merge;
    if (merge_slots_[slot].key == kNoPair) return nullptr;
  }
}

void BpeModel::add_merge(int32_t left, int32_t right, Merge merge) {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  size_t slot = merge_slot(key);
  while (merge_slots_[slot].key != key && merge_slots_[slot].key != kNoPair) slot = (slot + 1) & mask;
  merge_slots_[slot] = MergeSlot{key, merge};
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.size() > kMaxCachedWordBytes) return merge_word(word, ids);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto found = cache_.find(std::string(word));
    if (found != cache_.end()) {
      ids.insert(ids.end(), found->second.begin(), found->second.end());
      return;
    }
  }
  size_t start = ids.size();
  merge_word(word, ids);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheCapacity) cache_.clear();
  cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.end()));
}

void BpeModel::byte_symbols_of(std::string_view word, std::vector<int32_t>& symbols) const {
  for (char c : word) {
    int32_t id = byte_ids_[static_cast<unsigned char>(c)];
    if (id < 0)
      throw Error("the tokenizer has no token for the byte " + std::to_string(static_cast<unsigned char>(c)) +
                  " (byte-level symbol \"" + byte_symbols()[static_cast<unsigned char>(c)] + "\")");
    symbols.push_back(id);
  }
}

// As `tokenizers`' BPE::merge_word: a character in the vocabulary is its token; else its bytes' <0xNN> tokens when
// byte_fallback and all are there; else the unk token, pending until the next character in the vocabulary so that
// fuse_unk can join a run of them (byte fallback tokens do not end the run: they go before the pending unk).
void BpeModel::characters_of(std::string_view word, std::vector<int32_t>& symbols) const {
  bool unk_pending = false;
  for (size_t i = 0; i < word.size();) {
    const auto first_byte = static_cast<unsigned char>(word[i]);
    if (first_byte < 128 && ascii_ids_[first_byte] >= 0) {
      if (unk_pending) symbols.push_back(options_.unk_id), unk_pending = false;
      symbols.push_back(ascii_ids_[first_byte]);
      ++i;
      continue;
    }
    size_t length = 1;
    while (i + length < word.size() && (static_cast<unsigned char>(word[i + length]) & 0xC0) == 0x80) ++length;
    const std::string character(word.substr(i, length));
    i += length;
    auto found = vocab_.find(character);
    if (found != vocab_.end()) {
      if (unk_pending) symbols.push_back(options_.unk_id), unk_pending = false;
      symbols.push_back(found->second);
      continue;
    }
    if (options_.byte_fallback && std::all_of(character.begin(), character.end(), [&](char c) { return byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (char c : character) symbols.push_back(byte_fallback_ids_[static_cast<unsigned char>(c)]);
      continue;
    }
    if (options_.unk_id < 0) throw Error("the tokenizer has no token for the character \"" + character + "\", and no byte fallback or unk token for it");
    if (unk_pending && !options_.fuse_unk) symbols.push_back(options_.unk_id);
    unk_pending = true;
  }
  if (unk_pending) symbols.push_back(options_.unk_id);
}

// The algorithm of `tokenizers`' Word::merge_all: a priority queue of candidate merges ordered by
// (rank, position); a popped candidate is applied only if the pair now at its position still merges
// into the same token (otherwise it is stale). Symbols live in a linked list over the first symbols.
void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (options_.ignore_merges) {
    std::string spelling;
    if (options_.byte_level) append_byte_symbols(word, spelling);
    else spelling = word;
    auto found = vocab_.find(spelling);
    if (found != vocab_.end()) {
      ids.push_back(found->second);
      return;
    }
  }
  std::vector<int32_t> first;
  first.reserve(word.size());
  if (options_.byte_level) byte_symbols_of(word, first);
  else characters_of(word, first);
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  std::vector<Symbol> symbols(first.size());
  for (size_t i = 0; i < first.size(); ++i) symbols[i] = Symbol{first[i], static_cast<int32_t>(i) - 1, static_cast<int32_t>(i + 1), false};
  if (!symbols.empty()) symbols.back().next = -1;

  struct Candidate {
    int32_t rank, position, merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_if_merge = [&](int32_t position) {
    int32_t next = symbols[position].next;
    if (next < 0) return;
    if (const Merge* merge = find_merge(symbols[position].id, symbols[next].id)) queue.push(Candidate{merge->rank, position, merge->merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_if_merge(i);

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const Merge* current = find_merge(left.id, right.id);
    if (!current || current->merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.position;
    if (left.prev >= 0) push_if_merge(left.prev);
    push_if_merge(top.position);
  }
  for (const Symbol& symbol : symbols)
    if (!symbol.removed) ids.push_back(symbol.id);
}

}  // namespace memsweep::tokenizer_detail
