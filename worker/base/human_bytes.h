#pragma once
#include <string>

namespace memsweep {

// "0 B", "850 kB", "512 MB", "1.5 GB", "48 GB": three significant digits at most, decimal units (1 GB = 1e9 bytes, as
// `plan --device-memory` reads them).
std::string human_bytes(double bytes);

}  // namespace memsweep
