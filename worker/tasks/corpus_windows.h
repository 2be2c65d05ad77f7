#pragma once
// Windows of `length` tokens cut every `stride` tokens from each row of a token corpus — a raw uint16/uint32 stream
// (one row: Pythia's Pile shards), a 2-D .npy array or JSONL rows — numbered 0, 1, ... in corpus order and read on
// demand: memory is bounded by a read buffer (and, for JSONL, a few numbers per row), never by the file, so a
// 4 GB shard is mined in the memory of the model. libtorch-free.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/tasks/token_rows.h"

namespace memsweep {

class CorpusWindows {
 public:
  struct Window {
    std::vector<int64_t> tokens;
    int64_t row = -1;    // the JSONL line (1-based) or .npy row (0-based); -1 in a stream
    int64_t offset = 0;  // the window's first token within its row (or stream)
  };
  // By extension (.u16/.u32 or `format` "uint16"/"uint32": a stream; .npy; .jsonl). Errors name the file: a stream
  // whose size is not a whole number of tokens, a malformed .npy header, a JSONL line that does not parse (the whole
  // JSONL file is read once here, to number its windows). Ids are checked as windows are read (Error naming the token).
  static std::unique_ptr<CorpusWindows> open(const std::string& path, const std::string& format, int64_t vocab_size,
                                             const TextEncoder& encode, int64_t length, int64_t stride);
  virtual ~CorpusWindows() = default;
  int64_t count() const { return count_; }
  // Window `index` (0 <= index < count()); reading in increasing order is fastest.
  virtual Window at(int64_t index) = 0;

 protected:
  CorpusWindows(std::string path, int64_t vocab_size, int64_t length, int64_t stride)
      : path_(std::move(path)), vocab_size_(vocab_size), length_(length), stride_(stride) {}
  // Windows in a row of `tokens` tokens.
  int64_t windows_in(int64_t tokens) const { return tokens >= length_ ? (tokens - length_) / stride_ + 1 : 0; }
  std::string path_;
  int64_t vocab_size_, length_, stride_, count_ = 0;
};

}  // namespace memsweep
