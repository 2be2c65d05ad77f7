#include "worker/tasks/token_rows.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/checkpoint/safetensors.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void check_token_id(int64_t id, int64_t vocab_size, const std::string& where) {
  if (id < 0 || id >= vocab_size)
    throw Error(where + ": token id " + std::to_string(id) + " is outside the model's vocabulary (0 to " +
                std::to_string(vocab_size - 1) + ")");
}

NpyArray parse_npy_header(const uint8_t* bytes, uint64_t size, const std::string& path, bool check_data) {
  // The .npy header: magic, version, a Python dict literal with descr, fortran_order, shape.
  if (size < 10 || std::memcmp(bytes, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = bytes[6];
  uint64_t header_length = 0, header_start = 0;
  if (major == 1) header_length = bytes[8] | (uint64_t(bytes[9]) << 8), header_start = 10;
  else if (major == 2 || major == 3) {
    if (size < 12) throw Error(path + ": truncated .npy header");
    header_length = bytes[8] | (uint64_t(bytes[9]) << 8) | (uint64_t(bytes[10]) << 16) | (uint64_t(bytes[11]) << 24);
    header_start = 12;
  } else throw Error(path + ": unsupported .npy version " + std::to_string(major));
  if (header_start + header_length > size) throw Error(path + ": .npy header goes beyond the end of the file");
  const std::string header(reinterpret_cast<const char*>(bytes + header_start), header_length);
  auto value_of = [&](const std::string& key) {
    size_t at = header.find("'" + key + "'");
    if (at == std::string::npos) throw Error(path + ": .npy header has no '" + key + "': " + header);
    at = header.find(':', at);
    return header.substr(at + 1);
  };
  std::string descr = value_of("descr");
  if (descr.find('\'') == std::string::npos) throw Error(path + ": .npy header's descr is not a quoted string: " + header);
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  const std::string order = value_of("fortran_order");
  if (order.substr(0, order.find(',')).find("True") != std::string::npos)
    throw Error(path + ": Fortran-order .npy arrays are not supported; save with np.ascontiguousarray");
  std::string shape_text = value_of("shape");
  const size_t open = shape_text.find('('), close = shape_text.find(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    throw Error(path + ": .npy header's shape is not a tuple: " + header);
  shape_text = shape_text.substr(open + 1, close - open - 1);
  std::vector<int64_t> shape;
  for (size_t i = 0; i < shape_text.size();) {
    size_t j = shape_text.find(',', i);
    if (j == std::string::npos) j = shape_text.size();
    std::string item = shape_text.substr(i, j - i);
    const size_t first = item.find_first_not_of(" "), last = item.find_last_not_of(" ");
    if (first != std::string::npos) {
      item = item.substr(first, last - first + 1);
      if (item.size() > 15 || item.find_first_not_of("0123456789") != std::string::npos)
        throw Error(path + ": .npy shape entry '" + item + "' is not a dimension");
      shape.push_back(std::stoll(item));
    }
    i = j + 1;
  }
  if (shape.size() != 2) throw Error(path + ": expected a 2-D array of token ids, found shape (" + shape_text + ")");
  struct Kind { const char* descr; int size; bool is_signed; };
  const Kind kinds[] = {{"<i2", 2, true}, {"<i4", 4, true}, {"<i8", 8, true}, {"<u2", 2, false}, {"<u4", 4, false},
                        {"<u8", 8, false}, {"|u1", 1, false}, {"|i1", 1, true}};
  const Kind* kind = nullptr;
  for (const auto& k : kinds) if (descr == k.descr) kind = &k;
  if (!kind) throw Error(path + ": dtype '" + descr + "' is not a little-endian integer type");
  NpyArray array;
  array.data = bytes + header_start + header_length;
  array.rows = shape[0], array.columns = shape[1], array.element_size = kind->size, array.is_signed = kind->is_signed;
  const uint64_t available = size - header_start - header_length;
  if (check_data && shape[1] > 0 && uint64_t(shape[0]) > available / uint64_t(shape[1]) / uint64_t(kind->size))
    throw Error(path + ": data holds " + std::to_string(available) + " bytes, fewer than shape (" + shape_text + ") needs (truncated?)");
  return array;
}

int64_t NpyArray::at(int64_t row, int64_t column) const {
  const uint8_t* p = data + uint64_t(row * columns + column) * uint64_t(element_size);
  uint64_t raw = 0;
  std::memcpy(&raw, p, size_t(element_size));  // little-endian host
  int64_t value = int64_t(raw);
  if (is_signed && element_size < 8 && (raw >> (8 * element_size - 1)) & 1) value = int64_t(raw) - (int64_t(1) << (8 * element_size));
  return value;
}

TokenRows parse_npy(const uint8_t* bytes, uint64_t size, const std::string& path, int64_t vocab_size, int64_t limit) {
  const NpyArray array = parse_npy_header(bytes, size, path);
  TokenRows result;
  const int64_t rows = limit >= 0 ? std::min(limit, array.rows) : array.rows;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> row(static_cast<size_t>(array.columns));
    for (int64_t c = 0; c < array.columns; ++c) {
      row[size_t(c)] = array.at(r, c);
      check_token_id(row[size_t(c)], vocab_size, path + ": row " + std::to_string(r) + ", column " + std::to_string(c));
    }
    result.rows.push_back(std::move(row));
    result.source.push_back(r);
  }
  return result;
}

std::vector<int64_t> parse_jsonl_row(const std::string& line, const std::string& where, int64_t vocab_size, const TextEncoder& encode) {
  nlohmann::json json = parse_json(line, where);
  if (!json.is_object()) throw Error(where + ": expected a JSON object with \"tokens\" or \"text\"");
  std::vector<int64_t> row;
  if (json.contains("tokens")) {
    const auto& tokens = json["tokens"];
    if (!tokens.is_array()) throw Error(where + ": \"tokens\" is not an array");
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (!tokens[i].is_number_integer()) throw Error(where + ": \"tokens\"[" + std::to_string(i) + "] is not an integer");
      check_token_id(tokens[i].get<int64_t>(), vocab_size, where);
      row.push_back(tokens[i].get<int64_t>());
    }
  } else if (json.contains("text")) {
    if (!json["text"].is_string()) throw Error(where + ": \"text\" is not a string");
    if (!encode) throw Error(where + ": a text row needs the model's tokenizer, and none was found");
    row = encode(json["text"].get<std::string>());
    for (int64_t id : row) check_token_id(id, vocab_size, where);
  } else {
    throw Error(where + ": no \"tokens\" nor \"text\" field");
  }
  return row;
}

TokenRows parse_jsonl(std::istream& in, const std::string& path, int64_t vocab_size, const TextEncoder& encode, bool skip_bad,
                      int64_t limit) {
  TokenRows result;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (limit >= 0 && int64_t(result.rows.size()) >= limit) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      result.rows.push_back(parse_jsonl_row(line, path + ", line " + std::to_string(number), vocab_size, encode));
      result.source.push_back(number);
    } catch (const Error& e) {
      if (!skip_bad) throw;
      ++result.skipped;
      if (result.skip_reasons.size() < 5) result.skip_reasons.push_back(e.what());
    }
  }
  return result;
}

TextEncoder text_encoder(const Tokenizer* tokenizer) {
  if (!tokenizer) return {};
  return [tokenizer](const std::string& text) {
    auto ids = tokenizer->encode(text);
    return std::vector<int64_t>(ids.begin(), ids.end());
  };
}

TokenRows read_token_rows_file(const std::string& path, int64_t vocab_size, const TextEncoder& encode, bool skip_bad,
                               int64_t limit) {
  if (ends_with(path, ".npy")) {
    auto file = MappedFile::open(path);
    return parse_npy(file->data(), file->size(), path, vocab_size, limit);
  }
  if (ends_with(path, ".jsonl") || ends_with(path, ".json")) {
    std::ifstream in(path);
    if (!in) throw Error("cannot open " + path + " for reading");
    return parse_jsonl(in, path, vocab_size, encode, skip_bad, limit);
  }
  throw Error(path + ": unknown token file type (expected .npy or .jsonl)");
}

}  // namespace memsweep
