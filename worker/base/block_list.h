#pragma once
// Block lists as users write them: "3,7-9" -> {3, 7, 8, 9}. Blocks are 0-based layer indices.
#include <string>
#include <vector>

namespace memsweep {

// Sorted, without duplicates. Throws Error naming the offending item ("7-x", "9-3", "-1").
// When num_layers >= 0, every block must be below it.
std::vector<int> parse_block_list(const std::string& text, int num_layers = -1);

}  // namespace memsweep
