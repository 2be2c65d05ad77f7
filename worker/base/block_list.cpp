#include "worker/base/block_list.h"

#include <algorithm>
#include <cctype>

#include "worker/base/error.h"

namespace memsweep {
namespace {
int parse_index(const std::string& item, const std::string& digits) {
  if (digits.empty() || digits.size() > 6 ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
    throw Error("block list item '" + item + "' is not a block number or a range like 7-9");
  return std::stoi(digits);
}
}  // namespace

std::vector<int> parse_block_list(const std::string& text, int num_layers) {
  std::vector<int> blocks;
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); })) return blocks;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char c) { return std::isspace(c); }), item.end());
    size_t dash = item.find('-');
    int first = 0, last = 0;
    if (dash == std::string::npos) {
      first = last = parse_index(item, item);
    } else {
      first = parse_index(item, item.substr(0, dash));
      last = parse_index(item, item.substr(dash + 1));
      if (last < first) throw Error("block range '" + item + "' ends before it starts");
    }
    for (int b = first; b <= last; ++b) {
      if (num_layers >= 0 && b >= num_layers)
        throw Error("block " + std::to_string(b) + " does not exist: the model has " + std::to_string(num_layers) +
                    " blocks, numbered 0 to " + std::to_string(num_layers - 1));
      blocks.push_back(b);
    }
    start = comma + 1;
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  return blocks;
}

}  // namespace memsweep
