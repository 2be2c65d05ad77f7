#include "worker/tokenizer/bpe.h"

#include <queue>

#include "worker/base/error.h"
#include "worker/tokenizer/text.h"

namespace memsweep::tokenizer_detail {

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
                   const std::string& origin)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  const auto& symbols = byte_symbols();
  for (int byte = 0; byte < 256; ++byte) {
    auto found = vocab_.find(symbols[byte]);
    byte_ids_[byte] = found == vocab_.end() ? -1 : found->second;
  }
  merges_.reserve(merges.size());
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
    merges_[pair_key(left_id, right_id)] = Merge{static_cast<int32_t>(rank), merged_id};
  }
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

// The algorithm of `tokenizers`' Word::merge_all: a priority queue of candidate merges ordered by
// (rank, position); a popped candidate is applied only if the pair now at its position still merges
// into the same token (otherwise it is stale). Symbols live in a linked list over the initial bytes.
void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    std::string spelling;
    append_byte_symbols(word, spelling);
    auto found = vocab_.find(spelling);
    if (found != vocab_.end()) {
      ids.push_back(found->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  std::vector<Symbol> symbols(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    int32_t id = byte_ids_[static_cast<unsigned char>(word[i])];
    if (id < 0)
      throw Error("the tokenizer has no token for the byte " + std::to_string(static_cast<unsigned char>(word[i])) +
                  " (byte-level symbol \"" + byte_symbols()[static_cast<unsigned char>(word[i])] + "\")");
    symbols[i] = Symbol{id, static_cast<int32_t>(i) - 1, static_cast<int32_t>(i + 1), false};
  }
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
    auto found = merges_.find(pair_key(symbols[position].id, symbols[next].id));
    if (found != merges_.end()) queue.push(Candidate{found->second.rank, position, found->second.merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_if_merge(i);

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto current = merges_.find(pair_key(left.id, right.id));
    if (current == merges_.end() || current->second.merged_id != top.merged_id) continue;
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
