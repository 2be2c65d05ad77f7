#pragma once
// Rows of token ids from the files memorization sets come in, without libtorch:
// - .npy: a 2-D array of integers (int16/32/64, uint16/32/64), C order (the paper's code used these);
// - .jsonl: one JSON object per line, {"tokens": [ids...]} (EleutherAI's pythia-memorized-evals schema) or
//   {"text": "..."} encoded with the model's tokenizer;
// (raw token streams, .u16/.u32 as Pythia's Pile shards are distributed, are read window by window:
// corpus_windows.h).
// Bad data is an Error naming the file and line (JSONL) or row (npy); with skip_bad, a bad JSONL line is counted
// in `skipped` instead.
#include <cstdint>
#include <functional>
#include <istream>
#include <string>
#include <vector>

namespace memsweep {

struct TokenRows {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> source;  // per row: the line (JSONL, 1-based) or row (npy, 0-based) it came from
  int64_t skipped = 0;
  std::vector<std::string> skip_reasons;  // the first few, for the log
};

class Tokenizer;

// Encodes text to ids (the model's tokenizer); empty when the dataset has no text rows.
using TextEncoder = std::function<std::vector<int64_t>(const std::string&)>;
// The encoder of a tokenizer, or an empty one for nullptr (text rows are then an error naming the line).
TextEncoder text_encoder(const Tokenizer* tokenizer);

// Reads rows from a .npy or .jsonl file (by extension). Every id must be in [0, vocab_size).
// `limit` >= 0 stops after that many rows.
TokenRows read_token_rows_file(const std::string& path, int64_t vocab_size, const TextEncoder& encode, bool skip_bad,
                               int64_t limit = -1);

// The same from memory (fuzzing, tests); `path` only names the source in errors.
TokenRows parse_npy(const uint8_t* bytes, uint64_t size, const std::string& path, int64_t vocab_size, int64_t limit = -1);
TokenRows parse_jsonl(std::istream& in, const std::string& path, int64_t vocab_size, const TextEncoder& encode, bool skip_bad,
                      int64_t limit = -1);

// What parsing the rows reuses for reading them one at a time (corpus_windows.h).
// Error naming `where` unless 0 <= id < vocab_size.
void check_token_id(int64_t id, int64_t vocab_size, const std::string& where);
// One JSONL line's row ({"tokens": [...]} or {"text": ...}); Error naming `where`.
std::vector<int64_t> parse_jsonl_row(const std::string& line, const std::string& where, int64_t vocab_size, const TextEncoder& encode);
// A 2-D little-endian integer .npy array in place (the bytes stay the caller's), its header checked, and with
// check_data that `size` bytes hold its data.
struct NpyArray {
  const uint8_t* data = nullptr;
  int64_t rows = 0, columns = 0;
  int element_size = 0;
  bool is_signed = false;
  int64_t at(int64_t row, int64_t column) const;
};
NpyArray parse_npy_header(const uint8_t* bytes, uint64_t size, const std::string& path, bool check_data = true);

}  // namespace memsweep
