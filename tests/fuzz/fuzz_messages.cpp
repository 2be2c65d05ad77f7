// libFuzzer target: decoding what crosses process boundaries between rank 0 and the workers (decode_message).
// Every input is a Message or a memsweep::Error; a decoded message re-encodes to bytes that decode to the same
// encoding (nothing is lost or invented on the way through).
#include <cstddef>
#include <cstdint>
#include <string>

#include "orchestrator/transport/messages.h"
#include "worker/base/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  memsweep::Message message;
  try {
    message = memsweep::decode_message(bytes);
  } catch (const memsweep::Error&) {
    return 0;
  }
  const std::string once = memsweep::encode(message);
  std::string twice;
  try {
    twice = memsweep::encode(memsweep::decode_message(once));
  } catch (const memsweep::Error&) {
    __builtin_trap();  // what was accepted once must be accepted again
  }
  if (once != twice) __builtin_trap();
  return 0;
}
