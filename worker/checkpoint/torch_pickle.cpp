#include "worker/checkpoint/torch_pickle.h"

#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>

#include "worker/base/error.h"

namespace memsweep {
namespace {

enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Callable, StorageType, Storage, Tensor };
enum class Callable { OrderedDict, RebuildTensor, RebuildTensorV2, RebuildTensorV3, RebuildParameter };

// The only globals a pickle may name. Everything else is refused when it is named, before any use.
struct AllowedGlobal {
  const char* module;
  const char* name;
  Kind kind;
  int value;  // a Callable or a DType
};
constexpr AllowedGlobal kAllowedGlobals[] = {
    {"collections", "OrderedDict", Kind::Callable, int(Callable::OrderedDict)},
    {"torch._utils", "_rebuild_tensor", Kind::Callable, int(Callable::RebuildTensor)},
    {"torch._utils", "_rebuild_tensor_v2", Kind::Callable, int(Callable::RebuildTensorV2)},
    {"torch._utils", "_rebuild_tensor_v3", Kind::Callable, int(Callable::RebuildTensorV3)},
    {"torch._utils", "_rebuild_parameter", Kind::Callable, int(Callable::RebuildParameter)},
    {"torch", "FloatStorage", Kind::StorageType, int(DType::F32)},
    {"torch", "HalfStorage", Kind::StorageType, int(DType::F16)},
    {"torch", "BFloat16Storage", Kind::StorageType, int(DType::BF16)},
    {"torch", "DoubleStorage", Kind::StorageType, int(DType::F64)},
    {"torch", "LongStorage", Kind::StorageType, int(DType::I64)},
    {"torch", "IntStorage", Kind::StorageType, int(DType::I32)},
    {"torch", "ShortStorage", Kind::StorageType, int(DType::I16)},
    {"torch", "CharStorage", Kind::StorageType, int(DType::I8)},
    {"torch", "ByteStorage", Kind::StorageType, int(DType::U8)},
    {"torch", "BoolStorage", Kind::StorageType, int(DType::BOOL)},
    // Types newer than the legacy storage classes: torch names the dtype object instead (_rebuild_tensor_v3).
    {"torch", "float8_e4m3fn", Kind::StorageType, int(DType::F8_E4M3)},
    {"torch", "float8_e5m2", Kind::StorageType, int(DType::F8_E5M2)},
    {"torch", "uint16", Kind::StorageType, int(DType::U16)},
    {"torch", "uint32", Kind::StorageType, int(DType::U32)},
    {"torch", "uint64", Kind::StorageType, int(DType::U64)},
};

const char* opcode_name(uint8_t op) {
  switch (op) {
    case 0x80: return "PROTO";
    case 0x95: return "FRAME";
    case '.': return "STOP";
    case '(': return "MARK";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'N': return "NONE";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'M': return "BININT2";
    case 0x8a: return "LONG1";
    case 'G': return "BINFLOAT";
    case 'X': return "BINUNICODE";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case ')': return "EMPTY_TUPLE";
    case 't': return "TUPLE";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case ']': return "EMPTY_LIST";
    case 'l': return "LIST";
    case 'a': return "APPEND";
    case 'e': return "APPENDS";
    case '}': return "EMPTY_DICT";
    case 'd': return "DICT";
    case 's': return "SETITEM";
    case 'u': return "SETITEMS";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 0x94: return "MEMOIZE";
    case 'h': return "BINGET";
    case 'j': return "LONG_BINGET";
    case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL";
    case 'R': return "REDUCE";
    case 'b': return "BUILD";
    case 'Q': return "BINPERSID";
    default: return nullptr;
  }
}

// Values live in an arena owned by the unpickler and point at each other with raw pointers: cycles (a list
// appended to itself) and deep nesting cost nothing at destruction, which is flat.
struct Object {
  Kind kind = Kind::None;
  int64_t integer = 0;  // Bool, Int; Callable and StorageType: the enum; Storage and Tensor: an index
  double real = 0;
  std::string text;                  // String; Callable and StorageType: "module.name"
  std::vector<Object*> items;        // Tuple, List; Dict: the values, in insertion order
  std::vector<std::string> keys;     // Dict
  std::map<std::string, size_t> at;  // Dict: key -> position in items
};

std::string describe(const Object* object) {
  switch (object->kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "a bool";
    case Kind::Int: return "an int";
    case Kind::Float: return "a float";
    case Kind::String: return "a str";
    case Kind::Tuple: return "a tuple of " + std::to_string(object->items.size());
    case Kind::List: return "a list";
    case Kind::Dict: return "a dict";
    case Kind::Callable: return "the callable " + object->text;
    case Kind::StorageType: return "the storage type " + object->text;
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
  }
  return "?";
}

class Unpickler {
 public:
  Unpickler(const uint8_t* bytes, uint64_t size, const std::string& origin) : bytes_(bytes), size_(size), origin_(origin) {}
  PickledStateDict run();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    const char* name = opcode_name(opcode_);
    throw Error(origin_ + ": pickle opcode " + (name ? name : "?") + " at byte " + std::to_string(opcode_at_) + ": " + what);
  }
  const uint8_t* take(uint64_t count) {
    if (count > size_ - position_)
      fail("truncated pickle: needs " + std::to_string(count) + " more bytes, " + std::to_string(size_ - position_) +
           " remain (and no STOP yet)");
    const uint8_t* p = bytes_ + position_;
    position_ += count;
    return p;
  }
  uint64_t read_uint(int count) {
    const uint8_t* p = take(count);
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | p[i];
    return value;
  }
  std::string read_string(uint64_t length) {
    const uint8_t* p = take(length);
    return std::string(reinterpret_cast<const char*>(p), length);
  }
  std::string read_line() {
    const void* newline = std::memchr(bytes_ + position_, '\n', size_ - position_);
    if (!newline) fail("truncated pickle: no end of line after the GLOBAL name");
    const uint64_t length = static_cast<const uint8_t*>(newline) - (bytes_ + position_);
    std::string line = read_string(length);
    ++position_;
    return line;
  }

  Object* make(Kind kind) {
    arena_.emplace_back();
    arena_.back().kind = kind;
    return &arena_.back();
  }
  Object* make_int(int64_t value) {
    Object* object = make(Kind::Int);
    object->integer = value;
    return object;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Object* pop() {
    if (stack_.size() <= floor()) fail("stack underflow: the opcode needs a value and there is none (above the last MARK)");
    Object* top = stack_.back();
    stack_.pop_back();
    return top;
  }
  Object* peek() {
    if (stack_.size() <= floor()) fail("stack underflow: the opcode needs a value and there is none (above the last MARK)");
    return stack_.back();
  }
  std::vector<Object*> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    std::vector<Object*> items(stack_.begin() + marks_.back(), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  Object* memo_get(uint64_t slot) {
    auto it = memo_.find(slot);
    if (it == memo_.end()) fail("memo slot " + std::to_string(slot) + " was never stored");
    return it->second;
  }
  void set_item(Object* dict, Object* key, Object* value);
  Object* global(const std::string& module, const std::string& name);
  Object* reduce(Object* callable, Object* args);
  Object* rebuild_tensor(Callable which, const std::vector<Object*>& args);
  Object* persistent_load(Object* pid);
  void step(uint8_t op);

  const uint8_t* bytes_;
  uint64_t size_;
  std::string origin_;
  uint64_t position_ = 0;
  uint64_t opcode_at_ = 0;
  uint8_t opcode_ = 0;
  bool stopped_ = false;
  std::deque<Object> arena_;  // a deque never moves its elements
  std::vector<Object*> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  std::unordered_map<uint64_t, Object*> memo_;
  Object* result_ = nullptr;
  PickledStateDict out_;
  std::map<std::string, size_t> storage_index_;
  std::vector<PickledTensor> tensors_;  // every tensor built, named later from the dict keys
};

void Unpickler::set_item(Object* dict, Object* key, Object* value) {
  if (dict->kind != Kind::Dict) fail("sets an item on " + describe(dict) + ", not on a dict");
  if (key->kind != Kind::String) fail("dict key is " + describe(key) + "; a state dict pickle has only str keys");
  auto [it, inserted] = dict->at.emplace(key->text, dict->items.size());
  if (inserted) {
    dict->keys.push_back(key->text);
    dict->items.push_back(value);
  } else {
    dict->items[it->second] = value;  // as Python's dict does
  }
}

Object* Unpickler::global(const std::string& module, const std::string& name) {
  for (const auto& allowed : kAllowedGlobals) {
    if (module == allowed.module && name == allowed.name) {
      Object* object = make(allowed.kind);
      object->integer = allowed.value;
      object->text = module + "." + name;
      return object;
    }
  }
  fail("global '" + module + "." + name + "' is refused: a state dict names only collections.OrderedDict, "
       "torch._utils._rebuild_tensor* / _rebuild_parameter and torch storage types, and memsweep executes nothing "
       "from a checkpoint");
}

Object* Unpickler::persistent_load(Object* pid) {
  const auto& f = pid->items;
  if (pid->kind != Kind::Tuple || f.size() != 5 || f[0]->kind != Kind::String || f[0]->text != "storage" ||
      f[1]->kind != Kind::StorageType || f[2]->kind != Kind::String || f[3]->kind != Kind::String ||
      f[4]->kind != Kind::Int || f[4]->integer < 0)
    fail("persistent id is " + describe(pid) +
         ", expected ('storage', storage type, key, location, numel) as torch.save writes it");
  const DType dtype = DType(f[1]->integer);
  auto [it, inserted] = storage_index_.emplace(f[2]->text, out_.storages.size());
  if (inserted) {
    out_.storages.push_back({f[2]->text, dtype, uint64_t(f[4]->integer)});
  } else {
    const PickledStorage& seen = out_.storages[it->second];
    if (seen.dtype != dtype || seen.numel != uint64_t(f[4]->integer))
      fail("storage '" + seen.key + "' is declared twice, as " + std::to_string(seen.numel) + " x " +
           dtype_name(seen.dtype) + " and as " + std::to_string(f[4]->integer) + " x " + dtype_name(dtype));
  }
  Object* storage = make(Kind::Storage);
  storage->integer = int64_t(it->second);
  return storage;
}

Object* Unpickler::rebuild_tensor(Callable which, const std::vector<Object*>& args) {
  const size_t base = which == Callable::RebuildTensor ? 4 : which == Callable::RebuildTensorV2 ? 6 : 7;
  const std::string what = which == Callable::RebuildTensor ? "_rebuild_tensor" :
                           which == Callable::RebuildTensorV2 ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3";
  const bool has_metadata = which != Callable::RebuildTensor && args.size() == base + 1;
  if (args.size() != base && !has_metadata)
    fail(what + " gets " + std::to_string(args.size()) + " arguments, expected " + std::to_string(base) +
         (which == Callable::RebuildTensor ? "" : " or " + std::to_string(base + 1)));
  if (args[0]->kind != Kind::Storage) fail(what + ": argument 1 is " + describe(args[0]) + ", expected a storage");
  if (args[1]->kind != Kind::Int || args[1]->integer < 0)
    fail(what + ": storage offset is " + describe(args[1]) + ", expected a non-negative int");
  PickledTensor tensor;
  tensor.storage = size_t(args[0]->integer);
  tensor.storage_offset = args[1]->integer;
  for (int i : {2, 3}) {
    const char* field = i == 2 ? "size" : "stride";
    if (args[i]->kind != Kind::Tuple) fail(what + ": " + field + " is " + describe(args[i]) + ", expected a tuple of ints");
    for (const Object* dim : args[i]->items) {
      if (dim->kind != Kind::Int || dim->integer < 0)
        fail(what + ": " + field + " has an entry that is " + describe(dim) + ", expected a non-negative int");
      (i == 2 ? tensor.shape : tensor.strides).push_back(dim->integer);
    }
  }
  if (tensor.shape.size() != tensor.strides.size())
    fail(what + ": size " + shape_string(tensor.shape) + " and stride " + shape_string(tensor.strides) +
         " have different lengths");
  if (which != Callable::RebuildTensor) {
    if (args[4]->kind != Kind::Bool) fail(what + ": requires_grad is " + describe(args[4]) + ", expected a bool");
    if (args[5]->kind != Kind::Dict || !args[5]->items.empty())
      fail(what + ": backward hooks are " + describe(args[5]) + ", expected an empty OrderedDict");
  }
  if (which == Callable::RebuildTensorV3) {
    const DType storage_dtype = out_.storages[tensor.storage].dtype;
    if (args[6]->kind != Kind::StorageType || DType(args[6]->integer) != storage_dtype)
      fail(what + ": dtype is " + describe(args[6]) + ", expected the storage's " + dtype_name(storage_dtype));
  }
  // Metadata carries the conj / neg bits of a lazily conjugated or negated view: the bytes alone would be wrong.
  if (has_metadata && !(args[base]->kind == Kind::None || (args[base]->kind == Kind::Dict && args[base]->items.empty())))
    fail(what + ": tensor metadata (conj / neg bits) is not supported: save tensor.resolve_conj().resolve_neg()");
  Object* object = make(Kind::Tensor);
  object->integer = int64_t(tensors_.size());
  tensors_.push_back(std::move(tensor));
  return object;
}

Object* Unpickler::reduce(Object* callable, Object* args) {
  if (callable->kind != Kind::Callable) fail("calls " + describe(callable) + ", which is not an allowed callable");
  if (args->kind != Kind::Tuple) fail(callable->text + " gets " + describe(args) + " as arguments, expected a tuple");
  const auto& a = args->items;
  switch (Callable(callable->integer)) {
    case Callable::OrderedDict:
      if (!a.empty()) fail("collections.OrderedDict gets arguments; torch.save pickles it empty, then sets items");
      return make(Kind::Dict);
    case Callable::RebuildParameter:
      if (a.size() != 3 || a[0]->kind != Kind::Tensor || a[1]->kind != Kind::Bool || a[2]->kind != Kind::Dict ||
          !a[2]->items.empty())
        fail("_rebuild_parameter gets " + describe(args) + ", expected (tensor, requires_grad, empty OrderedDict)");
      return a[0];
    default:
      return rebuild_tensor(Callable(callable->integer), a);
  }
}

void Unpickler::step(uint8_t op) {
  switch (op) {
    case 0x80: {
      const uint64_t protocol = read_uint(1);
      if (protocol < 2 || protocol > 5) fail("pickle protocol " + std::to_string(protocol) + " is not supported (2 to 5)");
      break;
    }
    case 0x95: take(8); break;  // a frame only groups opcodes for buffered reading
    case '.':
      result_ = pop();
      if (!stack_.empty() || !marks_.empty()) fail("values or MARKs left on the stack at STOP");
      stopped_ = true;
      break;
    case '(': marks_.push_back(stack_.size()); break;
    case '0':
      if (stack_.size() > floor()) stack_.pop_back();
      else pop_to_mark();  // as Python: POP with nothing above a MARK removes the MARK
      break;
    case '1': pop_to_mark(); break;
    case '2': stack_.push_back(peek()); break;
    case 'N': stack_.push_back(make(Kind::None)); break;
    case 0x88:
    case 0x89: {
      Object* value = make(Kind::Bool);
      value->integer = op == 0x88;
      stack_.push_back(value);
      break;
    }
    case 'J': stack_.push_back(make_int(int32_t(uint32_t(read_uint(4))))); break;
    case 'K': stack_.push_back(make_int(int64_t(read_uint(1)))); break;
    case 'M': stack_.push_back(make_int(int64_t(read_uint(2)))); break;
    case 0x8a: {
      const uint64_t length = read_uint(1);
      if (length > 8) fail("an integer of " + std::to_string(length) + " bytes does not fit 64 bits");
      uint64_t value = length ? read_uint(int(length)) : 0;
      if (length && length < 8 && (value >> (8 * length - 1)) & 1) value |= ~uint64_t(0) << (8 * length);  // sign
      stack_.push_back(make_int(int64_t(value)));
      break;
    }
    case 'G': {
      const uint8_t* p = take(8);
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];  // big-endian
      Object* value = make(Kind::Float);
      std::memcpy(&value->real, &bits, 8);
      stack_.push_back(value);
      break;
    }
    case 'X':
    case 0x8c:
    case 0x8d: {
      Object* value = make(Kind::String);
      value->text = read_string(read_uint(op == 'X' ? 4 : op == 0x8c ? 1 : 8));
      stack_.push_back(value);
      break;
    }
    case ')': stack_.push_back(make(Kind::Tuple)); break;
    case 't':
    case 0x85:
    case 0x86:
    case 0x87: {
      Object* tuple = make(Kind::Tuple);
      if (op == 't') {
        tuple->items = pop_to_mark();
      } else {
        tuple->items.resize(op - 0x84);
        for (size_t i = tuple->items.size(); i-- > 0;) tuple->items[i] = pop();
      }
      stack_.push_back(tuple);
      break;
    }
    case ']': stack_.push_back(make(Kind::List)); break;
    case 'l': {
      Object* list = make(Kind::List);
      list->items = pop_to_mark();
      stack_.push_back(list);
      break;
    }
    case 'a':
    case 'e': {
      std::vector<Object*> values = op == 'a' ? std::vector<Object*>{pop()} : pop_to_mark();
      Object* list = peek();
      if (list->kind != Kind::List) fail("appends to " + describe(list) + ", not to a list");
      list->items.insert(list->items.end(), values.begin(), values.end());
      break;
    }
    case '}': stack_.push_back(make(Kind::Dict)); break;
    case 'd':
    case 'u': {
      std::vector<Object*> pairs = pop_to_mark();
      if (pairs.size() % 2) fail("an odd number of values (" + std::to_string(pairs.size()) + ") for key/value pairs");
      Object* dict = op == 'd' ? make(Kind::Dict) : peek();
      for (size_t i = 0; i < pairs.size(); i += 2) set_item(dict, pairs[i], pairs[i + 1]);
      if (op == 'd') stack_.push_back(dict);
      break;
    }
    case 's': {
      Object* value = pop();
      Object* key = pop();
      set_item(peek(), key, value);
      break;
    }
    case 'q': memo_[read_uint(1)] = peek(); break;
    case 'r': memo_[read_uint(4)] = peek(); break;
    case 0x94: memo_[memo_.size()] = peek(); break;
    case 'h': stack_.push_back(memo_get(read_uint(1))); break;
    case 'j': stack_.push_back(memo_get(read_uint(4))); break;
    case 'c': {
      std::string module = read_line();
      std::string name = read_line();
      stack_.push_back(global(module, name));
      break;
    }
    case 0x93: {
      Object* name = pop();
      Object* module = pop();
      if (module->kind != Kind::String || name->kind != Kind::String)
        fail("module and name are " + describe(module) + " and " + describe(name) + ", expected two str");
      stack_.push_back(global(module->text, name->text));
      break;
    }
    case 'R': {
      Object* args = pop();
      Object* callable = pop();
      stack_.push_back(reduce(callable, args));
      break;
    }
    case 'b': {
      Object* state = pop();
      Object* object = peek();
      // OrderedDict.__reduce__ hands its instance attributes (a state dict's _metadata) to BUILD: not weights.
      if (object->kind != Kind::Dict || (state->kind != Kind::Dict && state->kind != Kind::None))
        fail("sets the state of " + describe(object) + " from " + describe(state) +
             "; only a dict's attributes (a state dict's _metadata) are accepted");
      break;
    }
    case 'Q': stack_.push_back(persistent_load(pop())); break;
    default: {
      char text[8];
      std::snprintf(text, sizeof text, "0x%02x", op);
      fail(std::string("unknown or unsupported opcode ") + text + (op >= 0x20 && op < 0x7f ? std::string(" '") + char(op) + "'" : "") +
           " (a state dict pickle uses only the protocol-2 subset memsweep reads)");
    }
  }
}

PickledStateDict Unpickler::run() {
  while (!stopped_) {
    opcode_at_ = position_;
    opcode_ = 0;
    if (position_ >= size_) {
      throw Error(origin_ + ": truncated pickle: ends at byte " + std::to_string(size_) + " without a STOP opcode");
    }
    opcode_ = bytes_[position_++];
    step(opcode_);
  }
  if (result_->kind != Kind::Dict)
    throw Error(origin_ + ": the pickled object is " + describe(result_) + ", expected a dict of tensors (a state dict)");
  for (size_t i = 0; i < result_->keys.size(); ++i) {
    const Object* value = result_->items[i];
    const std::string& key = result_->keys[i];
    if (value->kind == Kind::Dict)
      throw Error(origin_ + ": entry '" + key + "' of the pickled dict is itself a dict, not a tensor: a training "
                  "checkpoint, not a state dict? Save its weights on their own: torch.save(checkpoint['" + key + "'], path)");
    if (value->kind != Kind::Tensor)
      throw Error(origin_ + ": entry '" + key + "' of the state dict is " + describe(value) + ", expected a tensor");
    PickledTensor tensor = tensors_[size_t(value->integer)];
    tensor.name = key;
    out_.tensors.push_back(std::move(tensor));
  }
  return std::move(out_);
}

}  // namespace

PickledStateDict parse_state_dict_pickle(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  return Unpickler(bytes, size, origin).run();
}

}  // namespace memsweep
