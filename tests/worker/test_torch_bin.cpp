// The pytorch_model.bin reader on crafted bytes: zip archives and pickles built here opcode by opcode, a valid
// state dict read back exactly (shared storages, a transposed view, ZIP64, protocol-4 opcodes), and a table of
// malicious or broken inputs, each a clear memsweep::Error naming what is wrong — never a crash.
#define BOOST_TEST_MODULE torch_bin
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "worker/base/error.h"
#include "worker/checkpoint/torch_bin.h"

using namespace memsweep;

namespace {

std::string le(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out += char(uint8_t(value >> (8 * i)));
  return out;
}

// Builds a pickle the way torch.save's protocol-2 pickler does, plus the odd opcode a test needs.
struct Pickle {
  std::string bytes = "\x80\x02";
  Pickle& op(char code) { return bytes += code, *this; }
  Pickle& raw(const std::string& text) { return bytes += text, *this; }
  Pickle& str(const std::string& text) { return bytes += 'X' + le(text.size(), 4) + text, *this; }
  Pickle& integer(int64_t value) { return bytes += 'J' + le(uint64_t(value), 4), *this; }
  Pickle& global(const std::string& module, const std::string& name) { return bytes += 'c' + module + '\n' + name + '\n', *this; }
  Pickle& ints(const std::vector<int64_t>& values) {
    op('(');
    for (int64_t v : values) integer(v);
    return op('t');
  }
  Pickle& empty_ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
  Pickle& storage(const std::string& key, const std::string& type = "FloatStorage", int64_t numel = 4) {
    return op('(').str("storage").global("torch", type).str(key).str("cpu").integer(numel).op('t').op('Q');
  }
  // _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) as a value on the stack.
  Pickle& tensor(const std::string& key, int64_t offset, const std::vector<int64_t>& size,
                 const std::vector<int64_t>& stride, const std::string& type = "FloatStorage", int64_t numel = 4) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').storage(key, type, numel).integer(offset).ints(size).ints(stride);
    return op('\x89').empty_ordered_dict().op('t').op('R');
  }
  Pickle& begin_state_dict() { return empty_ordered_dict().op('('); }
  Pickle& end_state_dict() { return op('u').op('.'); }
};

struct Entry {
  std::string name;
  std::string data;
  uint16_t method = 0;
};

// A zip archive in the layout torch.save writes (no alignment padding: the reader must not rely on it).
std::string zip(const std::vector<Entry>& entries, bool zip64 = false) {
  std::string out, central;
  for (const auto& e : entries) {
    const uint64_t offset = out.size();
    out += le(0x04034b50, 4) + le(zip64 ? 45 : 20, 2) + le(0, 2) + le(e.method, 2) + le(0, 4) + le(0, 4) +
           le(e.data.size(), 4) + le(e.data.size(), 4) + le(e.name.size(), 2) + le(0, 2) + e.name + e.data;
    const std::string extra = zip64 ? le(1, 2) + le(24, 2) + le(e.data.size(), 8) + le(e.data.size(), 8) + le(offset, 8) : "";
    const uint64_t size32 = zip64 ? 0xffffffff : e.data.size();
    central += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(e.method, 2) + le(0, 4) + le(0, 4) +
               le(size32, 4) + le(size32, 4) + le(e.name.size(), 2) + le(extra.size(), 2) + le(0, 2) + le(0, 2) +
               le(0, 2) + le(0, 4) + le(zip64 ? 0xffffffff : offset, 4) + e.name + extra;
  }
  const uint64_t directory = out.size();
  out += central;
  if (zip64) {
    const uint64_t record = out.size();
    out += le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(entries.size(), 8) +
           le(entries.size(), 8) + le(central.size(), 8) + le(directory, 8);
    out += le(0x07064b50, 4) + le(0, 4) + le(record, 8) + le(1, 4);
    return out + le(0x06054b50, 4) + le(0, 4) + le(0xffff, 2) + le(0xffff, 2) + le(0xffffffff, 4) +
           le(0xffffffff, 4) + le(0, 2);
  }
  return out + le(0x06054b50, 4) + le(0, 4) + le(entries.size(), 2) + le(entries.size(), 2) + le(central.size(), 4) +
         le(directory, 4) + le(0, 2);
}

std::string floats(const std::vector<float>& values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// An archive holding `pickle` and one storage '0' of four floats 1, 2, 3, 4.
std::string archive(const Pickle& pickle, std::vector<Entry> extra = {}) {
  std::vector<Entry> entries = {{"archive/data.pkl", pickle.bytes}, {"archive/byteorder", "little"},
                                {"archive/data/0", floats({1, 2, 3, 4})}, {"archive/version", "3\n"}};
  entries.insert(entries.end(), extra.begin(), extra.end());
  return zip(entries);
}

std::vector<StoredTensor> parse(const std::string& bytes) {
  return parse_torch_bin(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "m.bin");
}

std::string error_of(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

float at(const StoredTensor& t, int64_t index) {
  float value;
  std::memcpy(&value, t.data + index * 4, 4);
  return value;
}

Pickle one_tensor(const std::string& body_global_module, const std::string& body_global_name) {
  return Pickle().begin_state_dict().str("w").global(body_global_module, body_global_name).str("x").op('\x85').op('R').end_state_dict();
}

}  // namespace

BOOST_AUTO_TEST_CASE(state_dict_with_shared_storage_and_views) {
  // Storage '0' = [1, 2, 3, 4]; 'a' the whole of it as 2x2, 'b' a transposed view of it, 'c' its tail
  // (tied / viewed storage); storage '1' a bf16 vector.
  Pickle pickle;
  pickle.begin_state_dict();
  pickle.str("a").tensor("0", 0, {2, 2}, {2, 1});
  pickle.str("b").tensor("0", 0, {2, 2}, {1, 2});
  pickle.str("c").tensor("0", 2, {2}, {1});
  pickle.str("d").tensor("1", 0, {3}, {1}, "BFloat16Storage", 3);
  pickle.str("e").tensor("0", 4, {0}, {1});
  pickle.end_state_dict();
  for (bool zip64 : {false, true}) {
    std::vector<Entry> entries = {{"archive/data.pkl", pickle.bytes}, {"archive/data/0", floats({1, 2, 3, 4})},
                                  {"archive/data/1", std::string(6, '\x3f')}};
    const std::string bytes = zip(entries, zip64);
    auto tensors = parse(bytes);
    BOOST_TEST_REQUIRE(tensors.size() == 5u);
    BOOST_TEST(tensors[0].name == "a");
    BOOST_TEST((tensors[1].strides == std::vector<int64_t>{1, 2}));
    BOOST_TEST(at(tensors[1], 0) == 1.0f);
    BOOST_TEST(at(tensors[1], 1 * 1 + 0 * 2) == 2.0f);  // b[1][0] == a[0][1]
    BOOST_TEST(tensors[0].data == tensors[1].data);  // one storage, not copied
    BOOST_TEST(at(tensors[2], 0) == 3.0f);
    BOOST_TEST(int(tensors[3].dtype) == int(DType::BF16));
    BOOST_TEST((tensors[3].shape == std::vector<int64_t>{3}));
    BOOST_TEST(tensors[3].data[5] == 0x3f);
    BOOST_TEST(tensors[4].shape[0] == 0);
    BOOST_TEST(tensors[0].file == "m.bin");
  }
}

BOOST_AUTO_TEST_CASE(protocol_4_forms) {
  // STACK_GLOBAL, SHORT_BINUNICODE, MEMOIZE / BINGET, FRAME, BININT1 / BININT2 / LONG1 and a metadata dict.
  auto short_str = [](const std::string& s) { return std::string("\x8c") + char(s.size()) + s + "\x94"; };
  Pickle p;
  p.bytes = "\x80\x04\x95" + le(0, 8);
  p.raw(short_str("collections") + short_str("OrderedDict")).op('\x93').raw("\x94").op(')').op('R').op('(');
  p.raw(short_str("w")).raw(short_str("torch._utils") + short_str("_rebuild_tensor_v2")).op('\x93').op('(');
  p.op('(').raw(short_str("storage")).global("torch", "FloatStorage").raw(short_str("0") + short_str("cpu"));
  p.raw("\x8a\x01\x04").op('t').op('Q');  // numel 4 as LONG1
  p.raw("K\x01").raw(std::string("M\x03\x00", 3)).op('\x85').raw("K\x01").op('\x85').op('\x88').raw("h\x02").op(')').op('R');
  p.op('}').op('t').op('R').op('u').op('.');
  const std::string bytes = archive(p);  // the tensors point into it
  auto tensors = parse(bytes);
  BOOST_TEST_REQUIRE(tensors.size() == 1u);
  BOOST_TEST(tensors[0].name == "w");
  BOOST_TEST(at(tensors[0], 0) == 2.0f);
  BOOST_TEST((tensors[0].shape == std::vector<int64_t>{3}));
}

BOOST_AUTO_TEST_CASE(state_dict_metadata_is_accepted_and_ignored) {
  // What state_dict() pickles after its items: BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}.
  Pickle p;
  p.begin_state_dict().str("w").tensor("0", 0, {4}, {1}).op('u');
  p.op('}').str("_metadata").empty_ordered_dict().str("").op('}').str("version").integer(1).op('s').op('s').op('s');
  p.op('b').op('.');
  const std::string bytes = archive(p);  // the tensors point into it
  auto tensors = parse(bytes);
  BOOST_TEST_REQUIRE(tensors.size() == 1u);
  BOOST_TEST(at(tensors[0], 3) == 4.0f);
}

BOOST_AUTO_TEST_CASE(malicious_and_broken_pickles_are_clear_errors) {
  struct Case {
    std::string name;
    Pickle pickle;
    std::vector<std::string> words;
  };
  const Pickle ok_tensor = Pickle().begin_state_dict().str("w").tensor("0", 0, {4}, {1}).end_state_dict();
  auto cut = [](Pickle p, size_t keep) { return p.bytes.resize(keep), p; };
  const Case cases[] = {
      {"os.system via GLOBAL", one_tensor("os", "system"), {"m.bin (archive/data.pkl)", "global 'os.system' is refused", "GLOBAL"}},
      {"posix.system", one_tensor("posix", "system"), {"'posix.system' is refused"}},
      {"builtins.eval via STACK_GLOBAL",
       Pickle().str("builtins").str("eval").op('\x93').str("1+1").op('\x85').op('R').op('.'),
       {"'builtins.eval' is refused", "STACK_GLOBAL"}},
      {"__builtin__.getattr", one_tensor("__builtin__", "getattr"), {"'__builtin__.getattr' is refused"}},
      {"a torch module class", Pickle().global("torch.nn.modules.linear", "Linear").op(')').op('R').op('.'),
       {"'torch.nn.modules.linear.Linear' is refused"}},
      {"complex storage", Pickle().begin_state_dict().str("w").tensor("0", 0, {2}, {1}, "ComplexFloatStorage").end_state_dict(),
       {"'torch.ComplexFloatStorage' is refused"}},
      {"unknown opcode NEWOBJ", Pickle().empty_ordered_dict().op(')').op('\x81').op('.'), {"unsupported opcode 0x81", "byte 30"}},
      {"unknown opcode INST", Pickle().op('(').raw("ios\nsystem\n").op('.'), {"unsupported opcode 0x69 'i'"}},
      {"truncated inside an opcode", cut(ok_tensor, 40), {"truncated pickle"}},
      {"truncated before STOP", cut(ok_tensor, ok_tensor.bytes.size() - 1), {"without a STOP"}},
      {"stack underflow", Pickle().op('R').op('.'), {"REDUCE", "stack underflow"}},
      {"underflow across a MARK", Pickle().empty_ordered_dict().op('(').op('s').op('.'), {"SETITEM", "stack underflow"}},
      {"TUPLE without MARK", Pickle().integer(1).op('t').op('.'), {"no MARK"}},
      {"memo slot never stored", Pickle().raw("h\x07").op('.'), {"BINGET", "memo slot 7 was never stored"}},
      {"unsupported protocol", Pickle().raw("\x80\x07").op('.'), {"pickle protocol 7 is not supported"}},
      {"persistent id to a missing storage", Pickle().begin_state_dict().str("w").tensor("9", 0, {4}, {1}).end_state_dict(),
       {"refers to storage '9'", "no entry 'archive/data/9'"}},
      {"malformed persistent id", Pickle().str("storage").op('Q').op('.'), {"BINPERSID", "persistent id is a str"}},
      {"storage size differs from its entry", Pickle().begin_state_dict().str("w").tensor("0", 0, {4}, {1}, "FloatStorage", 5).end_state_dict(),
       {"storage '0' is declared as 5 x F32 (20 bytes) but entry 'archive/data/0' has 16 bytes"}},
      {"view beyond its storage", Pickle().begin_state_dict().str("w").tensor("0", 1, {2, 2}, {2, 1}).end_state_dict(),
       {"tensor 'w'", "storage offset 1, size [2, 2], stride [2, 1] addresses elements beyond its storage '0' of 4 elements"}},
      {"offset beyond its storage", Pickle().begin_state_dict().str("w").tensor("0", 5, {0}, {1}).end_state_dict(),
       {"tensor 'w'", "starts beyond"}},
      {"huge stride", Pickle().begin_state_dict().str("w").tensor("0", 0, {3}, {0x7fffffff}).end_state_dict(),
       {"tensor 'w'", "beyond its storage"}},
      {"size and stride lengths differ", Pickle().begin_state_dict().str("w").tensor("0", 0, {2, 2}, {1}).end_state_dict(),
       {"have different lengths"}},
      {"negative size", Pickle().begin_state_dict().str("w").tensor("0", 0, {-1}, {1}).end_state_dict(),
       {"expected a non-negative int"}},
      {"backward hooks present", Pickle().begin_state_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").op('(')
           .storage("0").integer(0).ints({4}).ints({1}).op('\x89').empty_ordered_dict().str("hook").integer(2).op('s')
           .op('t').op('R').end_state_dict(), {"backward hooks are a dict"}},
      {"REDUCE of a non-callable", Pickle().str("os.system").op(')').op('R').op('.'), {"calls a str, which is not an allowed callable"}},
      {"REDUCE of a storage type", Pickle().global("torch", "FloatStorage").op(')').op('R').op('.'), {"the storage type torch.FloatStorage"}},
      {"BUILD on a tensor", Pickle().begin_state_dict().str("w").tensor("0", 0, {4}, {1}).op('}').op('b').end_state_dict(),
       {"BUILD", "sets the state of a tensor"}},
      {"top level is a list", Pickle().op(']').op('.'), {"the pickled object is a list, expected a dict of tensors"}},
      {"training checkpoint", Pickle().op('}').str("model").begin_state_dict().op('u').op('s').op('.'),
       {"entry 'model'", "is itself a dict", "checkpoint['model']"}},
      {"non-tensor value", Pickle().op('}').str("epoch").integer(3).op('s').op('.'), {"entry 'epoch' of the state dict is an int"}},
      {"non-str key", Pickle().op('}').integer(3).integer(3).op('s').op('.'), {"dict key is an int"}},
      {"odd SETITEMS", Pickle().op('}').op('(').integer(3).op('u').op('.'), {"odd number of values (1)"}},
      {"values left at STOP", Pickle().op('}').op('}').op('.'), {"left on the stack at STOP"}},
      {"LONG1 too long", Pickle().raw(std::string("\x8a\x09") + std::string(9, '\x01')).op('.'), {"9 bytes does not fit 64 bits"}},
      {"tensor metadata (conj bit)", Pickle().begin_state_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").op('(')
           .storage("0").integer(0).ints({4}).ints({1}).op('\x89').empty_ordered_dict().op('}').str("conj").op('\x88').op('s')
           .op('t').op('R').end_state_dict(), {"tensor metadata (conj / neg bits) is not supported"}},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string message = error_of(archive(c.pickle));
      BOOST_TEST(!message.empty());
      for (const auto& word : c.words) BOOST_TEST(message.find(word) != std::string::npos, "'" << message << "' lacks '" << word << "'");
    }
  }
}

BOOST_AUTO_TEST_CASE(broken_archives_are_clear_errors) {
  const Pickle ok = Pickle().begin_state_dict().str("w").tensor("0", 0, {4}, {1}).end_state_dict();
  const std::string good = archive(ok);
  BOOST_TEST_REQUIRE(parse(good).size() == 1u);
  const size_t directory = good.rfind(le(0x02014b50, 4), good.find(le(0x06054b50, 4)));
  auto patched = [&](size_t at, const std::string& bytes) {
    std::string copy = good;
    copy.replace(at, bytes.size(), bytes);
    return copy;
  };
  const size_t eocd = good.size() - 22;
  struct Case {
    std::string name;
    std::string bytes;
    std::vector<std::string> words;
  };
  const Case cases[] = {
      {"empty file", "", {"m.bin", "no zip end-of-central-directory record", "truncated"}},
      {"truncated to half", good.substr(0, good.size() / 2), {"m.bin", "truncated or is not a zip archive"}},
      {"last byte cut", good.substr(0, good.size() - 1), {"no zip end-of-central-directory record"}},
      {"directory offset beyond the end record", patched(eocd + 16, le(good.size(), 4)), {"central directory", "truncated or corrupt"}},
      {"entry count too large", patched(eocd + 10, le(0x7fff, 2)), {"counts 32767 entries"}},
      {"multi-disk", patched(eocd + 4, le(1, 2)), {"multi-disk"}},
      {"ZIP64 values without locator", patched(eocd + 16, le(0xffffffff, 4)), {"no ZIP64 locator"}},
      {"compressed entry", zip({{"archive/data.pkl", ok.bytes, 8}, {"archive/data/0", floats({1, 2, 3, 4})}}),
       {"zip entry 'archive/data.pkl' is compressed (method 8, deflate)"}},
      {"local header offset beyond file", patched(directory + 42, le(good.size() + 100, 4)), {"no local header at byte"}},
      {"entry data beyond file", patched(directory + 20, le(1000000, 4) + le(1000000, 4)), {"goes beyond the end of the file"}},
      {"legacy format", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15), {"legacy torch.save format", "re-save"}},
      {"big-endian", zip({{"archive/data.pkl", ok.bytes}, {"archive/byteorder", "big"}, {"archive/data/0", floats({1, 2, 3, 4})}}),
       {"byteorder is 'big'"}},
      {"no data.pkl", zip({{"archive/data/0", floats({1, 2, 3, 4})}}), {"no archive/data.pkl"}},
      {"two folders", zip({{"a/data.pkl", ok.bytes}, {"b/data/0", floats({1, 2, 3, 4})}}), {"more than one folder"}},
      {"duplicate entry", zip({{"archive/data.pkl", ok.bytes}, {"archive/data.pkl", ok.bytes}}), {"'archive/data.pkl' appears twice"}},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string message = error_of(c.bytes);
      BOOST_TEST(!message.empty());
      for (const auto& word : c.words) BOOST_TEST(message.find(word) != std::string::npos, "'" << message << "' lacks '" << word << "'");
    }
  }
}

BOOST_AUTO_TEST_CASE(every_truncation_is_an_error_not_a_crash) {
  Pickle pickle;
  pickle.begin_state_dict().str("w").tensor("0", 0, {4}, {1}).end_state_dict();
  for (bool zip64 : {false, true}) {
    const std::string good = zip({{"archive/data.pkl", pickle.bytes}, {"archive/data/0", floats({1, 2, 3, 4})}}, zip64);
    for (size_t keep = 0; keep < good.size(); ++keep) {
      // Copied into a buffer of exactly `keep` bytes so a sanitizer sees any read past the end.
      std::string prefix = good.substr(0, keep);
      BOOST_TEST(!error_of(prefix).empty(), "prefix of " << keep << " bytes was accepted");
    }
  }
}

BOOST_AUTO_TEST_CASE(corrupted_pickle_bytes_never_crash) {
  // Every byte of a valid pickle replaced by values that are opcodes, lengths and text: each result is a
  // state dict or an Error; a crash or a hang fails the test run.
  Pickle pickle;
  pickle.begin_state_dict().str("a").tensor("0", 0, {2, 2}, {2, 1}).str("b").tensor("0", 1, {3}, {1}).end_state_dict();
  size_t accepted = 0, refused = 0;
  for (size_t i = 0; i < pickle.bytes.size(); ++i) {
    for (int value : {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, int('('), int('t'), int('R'), int('Q')}) {
      Pickle mutated = pickle;
      mutated.bytes[i] = char(value);
      try {
        for (const auto& t : parse(archive(mutated))) BOOST_TEST_REQUIRE(t.data != nullptr);
        ++accepted;
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  BOOST_TEST(refused > accepted);
}
