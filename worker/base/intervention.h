#pragma once
// An intervention: which blocks are short-circuited and which have zero attention. Its canonical name is its
// identity everywhere (study files, the store, reports): "baseline", "short_circuit:5",
// "short_circuit:18-23", "zero_attention:3", "short_circuit:1,4;zero_attention:2" — kinds in that order,
// blocks sorted and written as ranges.
#include <string>
#include <vector>

namespace memsweep {

struct Intervention {
  std::vector<int> short_circuit;   // sorted, unique
  std::vector<int> zero_attention;  // sorted, unique, disjoint from short_circuit

  bool is_baseline() const { return short_circuit.empty() && zero_attention.empty(); }
  // The lowest intervened block, or -1 for the baseline: layers below it compute what the baseline computes.
  int first_block() const;
  std::string name() const;
  // Parses a canonical or hand-written name ("sc:3" and "zero:2" are accepted too); Error on anything else,
  // a block >= num_layers (when num_layers >= 0) or a block under both kinds.
  static Intervention parse(const std::string& text, int num_layers = -1);
};

bool operator==(const Intervention& a, const Intervention& b);

// "1,2,3,7" for {1,2,3,7} is written "1-3,7".
std::string format_block_list(const std::vector<int>& blocks);

}  // namespace memsweep
