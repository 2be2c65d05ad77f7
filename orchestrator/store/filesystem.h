#pragma once
// Where the store lives matters: SQLite's WAL needs shared memory on one host, so it breaks on network file
// systems; their POSIX locks may also be node-local. Detected from statfs's f_type magic numbers.
#include <cstdint>
#include <string>

namespace memsweep {

// "NFS", "Lustre", "GPFS", ... for a network/cluster file system magic number, "" for anything else.
std::string network_filesystem_for_magic(int64_t f_type);
// The same for the file system holding `folder` ("" when statfs fails: nothing is known).
std::string network_filesystem_name(const std::string& folder);

}  // namespace memsweep
