#pragma once
// A unit × intervention's per-example numbers as columns (schemas/store.md): one column per name, holding the unit's
// examples in order at a fixed width, little-endian, in the narrowest encoding that gives every value back exactly:
// u8, u16 or i32 when every value is an integer in range, f32 when every value is a float32, else f64. A value an
// example does not have (a mismatch token where the whole suffix matched) is a NaN with its own bit pattern, so a
// NaN the worker computed stays a NaN. This is what makes a paper-scale store small: ~30 bytes per memorization
// example × intervention instead of ~1 kB of JSON.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/tasks/results.h"

namespace memsweep {

enum class ColumnEncoding { u8, u16, i32, f32, f64 };
const char* column_encoding_name(ColumnEncoding encoding);
ColumnEncoding parse_column_encoding(const std::string& name);  // Error for an unknown name
size_t column_encoding_width(ColumnEncoding encoding);

struct ExampleColumn {
  std::string name;
  bool fact = false;  // from ExampleRecord::facts, else ::values
  ColumnEncoding encoding = ColumnEncoding::f64;
  std::string data;   // count values of `width` bytes
};

// The columns of the records of examples [first, first + count): Error unless there is one record per example, in
// order, and no name is both a metric and a fact.
std::vector<ExampleColumn> encode_example_columns(const std::vector<ExampleRecord>& examples, int64_t first, int64_t count);

// The records back (index, values, facts; no detail). Error naming the column when its size does not fit `count`.
std::vector<ExampleRecord> decode_example_columns(const std::vector<ExampleColumn>& columns, int64_t first, int64_t count);

}  // namespace memsweep
