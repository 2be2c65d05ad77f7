// Encoding throughput of memsweep::Tokenizer: every string field of the given JSON-lines files (PIQA,
// ARC-Easy, ...) is encoded once with a fresh tokenizer (empty word cache) and then again (warm cache).
// usage: tokenizer_bench TOKENIZER FILE.jsonl...
#include <chrono>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "worker/base/json_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

// The texts a task tokenizes: every string except identifiers and answer labels.
void collect_strings(const nlohmann::json& value, std::vector<std::string>& texts) {
  if (value.is_string()) texts.push_back(value.get<std::string>());
  if (value.is_array())
    for (const auto& item : value) collect_strings(item, texts);
  if (value.is_object())
    for (const auto& item : value.items())
      if (item.key() != "id" && item.key() != "label" && item.key() != "answerKey") collect_strings(item.value(), texts);
}

// Seconds to encode all texts, and the number of ids (so the work cannot be optimized away).
std::pair<double, size_t> encode_all(const memsweep::Tokenizer& tokenizer, const std::vector<std::string>& texts) {
  auto start = std::chrono::steady_clock::now();
  size_t ids = 0;
  for (const std::string& text : texts) ids += tokenizer.encode(text).size();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), ids};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER FILE.jsonl...\n", argv[0]);
    return 2;
  }
  try {
    std::vector<std::string> texts;
    for (int i = 2; i < argc; ++i) {
      std::string content = memsweep::read_file(argv[i]);
      size_t start = 0, line = 0;
      while (start < content.size()) {
        size_t end = content.find('\n', start);
        if (end == std::string::npos) end = content.size();
        ++line;
        if (end > start)
          collect_strings(memsweep::parse_json(content.substr(start, end - start), std::string(argv[i]) + ", line " + std::to_string(line)), texts);
        start = end + 1;
      }
    }
    size_t bytes = 0;
    for (const std::string& text : texts) bytes += text.size();

    auto load_start = std::chrono::steady_clock::now();
    memsweep::Tokenizer tokenizer = memsweep::Tokenizer::load(argv[1]);
    double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    auto [cold_seconds, ids] = encode_all(tokenizer, texts);
    double warm_seconds = 1e30;
    for (int repeat = 0; repeat < 5; ++repeat) warm_seconds = std::min(warm_seconds, encode_all(tokenizer, texts).first);
    std::printf("%s: %zu texts, %.2f MB, %zu ids; load %.3f s; encode cold cache %.1f MB/s, warm cache %.1f MB/s (best of 5)\n",
                argv[1], texts.size(), bytes / 1e6, ids, load_seconds, bytes / 1e6 / cold_seconds, bytes / 1e6 / warm_seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
