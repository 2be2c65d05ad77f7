#include "worker/base/intervention.h"

#include <algorithm>

#include "worker/base/block_list.h"
#include "worker/base/error.h"

namespace memsweep {

int Intervention::first_block() const {
  int first = -1;
  for (const auto* blocks : {&short_circuit, &zero_attention})
    if (!blocks->empty() && (first < 0 || blocks->front() < first)) first = blocks->front();
  return first;
}

std::string format_block_list(const std::vector<int>& blocks) {
  std::string text;
  for (size_t i = 0; i < blocks.size();) {
    size_t j = i;
    while (j + 1 < blocks.size() && blocks[j + 1] == blocks[j] + 1) ++j;
    text += (text.empty() ? "" : ",") + std::to_string(blocks[i]);
    if (j > i) text += "-" + std::to_string(blocks[j]);
    i = j + 1;
  }
  return text;
}

std::string Intervention::name() const {
  if (is_baseline()) return "baseline";
  std::string text;
  if (!short_circuit.empty()) text = "short_circuit:" + format_block_list(short_circuit);
  if (!zero_attention.empty()) text += (text.empty() ? "" : ";") + std::string("zero_attention:") + format_block_list(zero_attention);
  return text;
}

Intervention Intervention::parse(const std::string& text, int num_layers) {
  Intervention result;
  if (text == "baseline") return result;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(start, end - start);
    const size_t colon = part.find(':');
    const std::string kind = part.substr(0, colon);
    if (colon == std::string::npos || part.size() == colon + 1)
      throw Error("intervention '" + text + "': '" + part + "' is not KIND:BLOCKS (e.g. short_circuit:3 or zero_attention:0-2)");
    std::vector<int> blocks = parse_block_list(part.substr(colon + 1), num_layers);
    if (kind == "short_circuit" || kind == "sc")
      result.short_circuit.insert(result.short_circuit.end(), blocks.begin(), blocks.end());
    else if (kind == "zero_attention" || kind == "zero")
      result.zero_attention.insert(result.zero_attention.end(), blocks.begin(), blocks.end());
    else
      throw Error("intervention '" + text + "': unknown kind '" + kind + "' (expected short_circuit or zero_attention)");
    start = end + 1;
  }
  for (auto* blocks : {&result.short_circuit, &result.zero_attention}) {
    std::sort(blocks->begin(), blocks->end());
    blocks->erase(std::unique(blocks->begin(), blocks->end()), blocks->end());
  }
  for (int b : result.short_circuit)
    if (std::binary_search(result.zero_attention.begin(), result.zero_attention.end(), b))
      throw Error("intervention '" + text + "': block " + std::to_string(b) + " is both short-circuited and zeroed");
  return result;
}

bool operator==(const Intervention& a, const Intervention& b) {
  return a.short_circuit == b.short_circuit && a.zero_attention == b.zero_attention;
}

}  // namespace memsweep
