#pragma once
// Rows of token ids from the files memorization sets come in, without libtorch:
// - .npy: a 2-D array of integers (int16/32/64, uint16/32/64), C order (the paper's code used these);
// - .jsonl: one JSON object per line, {"tokens": [ids...]} (EleutherAI's pythia-memorized-evals schema) or
//   {"text": "..."} encoded with the model's tokenizer;
// - raw token files (.bin/.u16/.u32: little-endian uint16 or uint32, as Pythia's Pile shards are distributed),
//   read as one long stream that callers cut into windows.
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

// A raw token stream: element size from `format` ("uint16" | "uint32"), or by extension (.u16, .u32).
std::vector<int64_t> read_token_stream(const std::string& path, const std::string& format, int64_t vocab_size);

}  // namespace memsweep
