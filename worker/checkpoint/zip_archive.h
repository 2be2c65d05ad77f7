#pragma once
// The table of contents of a zip archive whose entries are stored (uncompressed), as torch.save writes them,
// so every entry's bytes can be used in place from a memory mapping. Reads the end-of-central-directory
// record (and the ZIP64 one when present: torch shards of more than 4 GB need it), the central directory and
// each entry's local header; a compressed or encrypted entry, a multi-disk archive, and any offset or size
// that points outside the file are an Error naming `origin` (and the entry), never an out-of-bounds read.
// CRCs are not checked: that would read every byte of a multi-gigabyte shard before a model is built.
#include <cstdint>
#include <string>
#include <vector>

namespace memsweep {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // from the start of the archive; [data_offset, data_offset + size) lies in it
  uint64_t size = 0;
};

// Entries sorted by name (names are unique). Pure function of the bytes; `origin` only goes into messages.
std::vector<ZipEntry> parse_stored_zip(const uint8_t* bytes, uint64_t size, const std::string& origin);

// The entry with exactly this name, or nullptr.
const ZipEntry* find_zip_entry(const std::vector<ZipEntry>& entries, const std::string& name);

}  // namespace memsweep
