#pragma once
// A restricted unpickler for the data.pkl of a torch.save'd state dict. It executes nothing: it builds plain
// values (None, bool, int, float, str, tuple, list, dict) and interprets the handful of callables a state
// dict pickle names — collections.OrderedDict, torch._utils._rebuild_tensor{,_v2,_v3}, _rebuild_parameter —
// as value constructors. Storage classes (torch.FloatStorage, ..., and the dtype objects torch uses for newer
// types, e.g. torch.float8_e4m3fn) are known only as the dtype they stand for. Any other global (os.system,
// builtins.eval, torch.nn.modules.linear.Linear, ...) is refused at the GLOBAL / STACK_GLOBAL opcode itself.
//
// Opcodes understood (what torch.save emits at protocol 2, plus the protocol-4 forms a pickle_protocol
// argument can produce): PROTO FRAME STOP MARK POP POP_MARK DUP, NONE NEWTRUE NEWFALSE BININT BININT1
// BININT2 LONG1 BINFLOAT, BINUNICODE SHORT_BINUNICODE BINUNICODE8, EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3,
// EMPTY_LIST LIST APPEND APPENDS, EMPTY_DICT DICT SETITEM SETITEMS, BINPUT LONG_BINPUT MEMOIZE BINGET
// LONG_BINGET, GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID. Any other opcode is an Error naming it and its
// byte offset. Errors name `origin` (file and pickle entry); malformed input is an Error, never a crash.
#include <cstdint>
#include <string>
#include <vector>

#include "worker/checkpoint/safetensors.h"

namespace memsweep {

// A storage named by a persistent id ('storage', storage type, key, location, numel): its bytes are the
// archive entry data/<key>. Only the declaration: torch_bin.cpp checks it against the archive.
struct PickledStorage {
  std::string key;
  DType dtype;
  uint64_t numel = 0;
};

struct PickledTensor {
  std::string name;       // the state dict key
  size_t storage = 0;     // index into PickledStateDict::storages
  int64_t storage_offset = 0;  // in elements
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
};

struct PickledStateDict {
  std::vector<PickledStorage> storages;  // each key once
  std::vector<PickledTensor> tensors;    // in the order of the dict
};

// The top-level object must be a dict (OrderedDict or plain) of str -> tensor. A nested training checkpoint
// ({"model": state_dict, "optimizer": ...}) is an Error that says so: which sub-dict holds the weights is a
// guess memsweep does not make.
PickledStateDict parse_state_dict_pickle(const uint8_t* bytes, uint64_t size, const std::string& origin);

}  // namespace memsweep
