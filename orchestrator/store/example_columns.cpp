#include "orchestrator/store/example_columns.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "worker/base/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the store's columns are little-endian and written with memcpy: a big-endian host needs byte swaps here"
#endif

namespace memsweep {

namespace {

// "No value here": NaNs with a payload no arithmetic produces; a computed NaN is stored as the canonical quiet NaN.
constexpr uint32_t kAbsent32 = 0x7fc0dead;
constexpr uint64_t kAbsent64 = 0x7ff80000dead0000ull;
constexpr uint32_t kNan32 = 0x7fc00000;
constexpr uint64_t kNan64 = 0x7ff8000000000000ull;

struct Choice {
  bool integral = true, float32 = true, absent = false;
  double low = 0, high = 0;
};

ColumnEncoding choose(const Choice& c) {
  if (c.integral && !c.absent) {
    if (c.low >= 0 && c.high <= 255) return ColumnEncoding::u8;
    if (c.low >= 0 && c.high <= 65535) return ColumnEncoding::u16;
    if (c.low >= std::numeric_limits<int32_t>::min() && c.high <= std::numeric_limits<int32_t>::max()) return ColumnEncoding::i32;
  }
  return c.float32 ? ColumnEncoding::f32 : ColumnEncoding::f64;
}

template <typename T>
void put(std::string& data, size_t at, T value) {
  std::memcpy(&data[at * sizeof(T)], &value, sizeof(T));
}
template <typename T>
T get(const std::string& data, size_t at) {
  T value;
  std::memcpy(&value, &data[at * sizeof(T)], sizeof(T));
  return value;
}

}  // namespace

const char* column_encoding_name(ColumnEncoding encoding) {
  switch (encoding) {
    case ColumnEncoding::u8: return "u8";
    case ColumnEncoding::u16: return "u16";
    case ColumnEncoding::i32: return "i32";
    case ColumnEncoding::f32: return "f32";
    case ColumnEncoding::f64: return "f64";
  }
  return "?";
}

ColumnEncoding parse_column_encoding(const std::string& name) {
  for (ColumnEncoding e : {ColumnEncoding::u8, ColumnEncoding::u16, ColumnEncoding::i32, ColumnEncoding::f32, ColumnEncoding::f64})
    if (name == column_encoding_name(e)) return e;
  throw Error("store: unknown column encoding '" + name + "' (u8, u16, i32, f32 or f64)");
}

size_t column_encoding_width(ColumnEncoding encoding) {
  switch (encoding) {
    case ColumnEncoding::u8: return 1;
    case ColumnEncoding::u16: return 2;
    case ColumnEncoding::i32: case ColumnEncoding::f32: return 4;
    case ColumnEncoding::f64: return 8;
  }
  return 8;
}

std::vector<ExampleColumn> encode_example_columns(const std::vector<ExampleRecord>& examples, int64_t first, int64_t count) {
  if (int64_t(examples.size()) != count)
    throw Error("store: " + std::to_string(examples.size()) + " example records for the unit's " + std::to_string(count) + " examples");
  // Per name (metrics first, then facts): how narrow an encoding holds every value.
  std::map<std::pair<bool, std::string>, Choice> choices;
  for (size_t i = 0; i < examples.size(); ++i) {
    const ExampleRecord& e = examples[i];
    if (e.index != first + int64_t(i))
      throw Error("store: the unit's example records are not examples " + std::to_string(first) + ".." + std::to_string(first + count - 1) +
                  " in order (record " + std::to_string(i) + " is example " + std::to_string(e.index) + ")");
    for (bool fact : {false, true})
      for (const auto& [name, value] : fact ? e.facts : e.values) {
        if (fact && e.values.count(name)) throw Error("store: '" + name + "' is both a metric and a fact of example " + std::to_string(e.index));
        auto [at, fresh] = choices.try_emplace({fact, name});
        Choice& c = at->second;
        if (fresh) c.low = c.high = std::isfinite(value) ? value : 0;
        if (!(value == std::trunc(value)) || (value == 0 && std::signbit(value))) c.integral = false;  // NaN and -0 too (inf falls out of every integer range below)
        else c.low = std::min(c.low, value), c.high = std::max(c.high, value);
        if (!std::isnan(value) && double(float(value)) != value) c.float32 = false;
      }
  }
  std::vector<ExampleColumn> columns;
  for (auto& [key, c] : choices) {
    const auto& [fact, name] = key;
    ExampleColumn column{name, fact, ColumnEncoding::f64, {}};
    for (const ExampleRecord& e : examples)
      if (!(fact ? e.facts : e.values).count(name)) c.absent = true;
    column.encoding = choose(c);
    column.data.assign(size_t(count) * column_encoding_width(column.encoding), '\0');
    for (size_t i = 0; i < examples.size(); ++i) {
      const Values& values = fact ? examples[i].facts : examples[i].values;
      const auto found = values.find(name);
      const bool here = found != values.end();
      const double v = here ? found->second : 0;
      switch (column.encoding) {
        case ColumnEncoding::u8: put(column.data, i, uint8_t(v)); break;
        case ColumnEncoding::u16: put(column.data, i, uint16_t(v)); break;
        case ColumnEncoding::i32: put(column.data, i, int32_t(v)); break;
        case ColumnEncoding::f32: {
          uint32_t bits = !here ? kAbsent32 : std::isnan(v) ? kNan32 : 0;
          if (here && !std::isnan(v)) {
            const float f = float(v);
            std::memcpy(&bits, &f, 4);
          }
          put(column.data, i, bits);
          break;
        }
        case ColumnEncoding::f64: {
          uint64_t bits = !here ? kAbsent64 : std::isnan(v) ? kNan64 : 0;
          if (here && !std::isnan(v)) std::memcpy(&bits, &v, 8);
          put(column.data, i, bits);
          break;
        }
      }
    }
    columns.push_back(std::move(column));
  }
  return columns;
}

std::vector<ExampleRecord> decode_example_columns(const std::vector<ExampleColumn>& columns, int64_t first, int64_t count) {
  std::vector<ExampleRecord> examples(size_t(std::max<int64_t>(count, 0)));
  for (size_t i = 0; i < examples.size(); ++i) examples[i].index = first + int64_t(i);
  for (const ExampleColumn& column : columns) {
    const size_t width = column_encoding_width(column.encoding);
    if (column.data.size() != examples.size() * width)
      throw Error("store: column '" + column.name + "' holds " + std::to_string(column.data.size()) + " bytes; " +
                  std::to_string(count) + " " + column_encoding_name(column.encoding) + " values take " +
                  std::to_string(examples.size() * width));
    for (size_t i = 0; i < examples.size(); ++i) {
      Values& values = column.fact ? examples[i].facts : examples[i].values;
      switch (column.encoding) {
        case ColumnEncoding::u8: values[column.name] = get<uint8_t>(column.data, i); break;
        case ColumnEncoding::u16: values[column.name] = get<uint16_t>(column.data, i); break;
        case ColumnEncoding::i32: values[column.name] = get<int32_t>(column.data, i); break;
        case ColumnEncoding::f32:
          if (get<uint32_t>(column.data, i) != kAbsent32) values[column.name] = get<float>(column.data, i);
          break;
        case ColumnEncoding::f64:
          if (get<uint64_t>(column.data, i) != kAbsent64) values[column.name] = get<double>(column.data, i);
          break;
      }
    }
  }
  return examples;
}

}  // namespace memsweep
