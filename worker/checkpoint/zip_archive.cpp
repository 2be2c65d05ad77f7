#include "worker/checkpoint/zip_archive.h"

#include <algorithm>

#include "worker/base/error.h"

namespace memsweep {
namespace {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint64_t read_le(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

const char* method_name(uint64_t method) {
  switch (method) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    default: return "unknown";
  }
}

// True when [offset, offset + length) lies inside [0, limit), without overflow.
bool inside(uint64_t offset, uint64_t length, uint64_t limit) { return offset <= limit && length <= limit - offset; }

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t end = 0;  // where the central directory must stop: the first end record
};

// The last end-of-central-directory record whose comment reaches exactly the end of the file.
Directory find_directory(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  const std::string truncated = origin + ": no zip end-of-central-directory record in the last " +
                                std::to_string(std::min<uint64_t>(size, kEndSize + 0xffff)) +
                                " bytes: the file is truncated or is not a zip archive";
  if (size < kEndSize) throw Error(truncated);
  const uint64_t lowest = size - kEndSize > 0xffff ? size - kEndSize - 0xffff : 0;
  uint64_t at = size - kEndSize + 1;
  bool found = false;
  while (at-- > lowest) {
    if (read_le(bytes + at, 4) == kEndSignature && at + kEndSize + read_le(bytes + at + 20, 2) == size) {
      found = true;
      break;
    }
  }
  if (!found) throw Error(truncated);
  const uint8_t* end = bytes + at;
  if (read_le(end + 4, 2) != 0 || read_le(end + 6, 2) != 0)
    throw Error(origin + ": multi-disk zip archives are not supported");
  Directory directory{read_le(end + 10, 2), read_le(end + 16, 4), read_le(end + 12, 4), at};

  if (at >= kZip64LocatorSize && read_le(bytes + at - kZip64LocatorSize, 4) == kZip64LocatorSignature) {
    const uint8_t* locator = bytes + at - kZip64LocatorSize;
    const uint64_t record = read_le(locator + 8, 8);
    if (!inside(record, kZip64EndSize, at - kZip64LocatorSize) || read_le(bytes + record, 4) != kZip64EndSignature)
      throw Error(origin + ": the ZIP64 end-of-central-directory locator points to byte " + std::to_string(record) +
                  ", where there is no ZIP64 end record (file corrupt or truncated)");
    const uint8_t* end64 = bytes + record;
    if (read_le(end64 + 16, 4) != 0 || read_le(end64 + 20, 4) != 0)
      throw Error(origin + ": multi-disk zip archives are not supported");
    directory = {read_le(end64 + 32, 8), read_le(end64 + 48, 8), read_le(end64 + 40, 8), record};
  } else if (directory.entries == 0xffff || directory.offset == 0xffffffff || directory.size == 0xffffffff) {
    throw Error(origin + ": the zip end record asks for ZIP64 values, but there is no ZIP64 locator before it");
  }
  if (!inside(directory.offset, directory.size, directory.end))
    throw Error(origin + ": the zip central directory [" + std::to_string(directory.offset) + ", " +
                std::to_string(directory.offset + directory.size) + ") does not end before the end record at byte " +
                std::to_string(directory.end) + " (file truncated or corrupt)");
  if (directory.entries > directory.size / kCentralHeaderSize)
    throw Error(origin + ": the zip end record counts " + std::to_string(directory.entries) +
                " entries, more than a central directory of " + std::to_string(directory.size) + " bytes can hold");
  return directory;
}

// Replaces the saturated 32-bit sizes and offset of a central header with the ZIP64 extra field's values,
// which appear in this fixed order and only for the fields that are saturated.
void apply_zip64_extra(const uint8_t* extra, uint64_t extra_size, uint64_t& size, uint64_t& compressed,
                       uint64_t& local_offset, const std::string& where) {
  const bool need_size = size == 0xffffffff, need_compressed = compressed == 0xffffffff,
             need_offset = local_offset == 0xffffffff;
  if (!need_size && !need_compressed && !need_offset) return;
  uint64_t at = 0;
  while (at + 4 <= extra_size) {
    const uint64_t id = read_le(extra + at, 2), length = read_le(extra + at + 2, 2);
    if (!inside(at + 4, length, extra_size)) break;
    if (id == kZip64ExtraId) {
      const uint8_t* field = extra + at + 4;
      uint64_t used = 0;
      const std::pair<bool, uint64_t*> fields[] = {{need_size, &size}, {need_compressed, &compressed}, {need_offset, &local_offset}};
      for (auto [needed, value] : fields) {
        if (!needed) continue;
        if (used + 8 > length) throw Error(where + ": ZIP64 extra field too short for the values it must hold");
        *value = read_le(field + used, 8);
        used += 8;
      }
      return;
    }
    at += 4 + length;
  }
  throw Error(where + ": sizes or offset are 0xffffffff but there is no ZIP64 extra field");
}

}  // namespace

std::vector<ZipEntry> parse_stored_zip(const uint8_t* bytes, uint64_t size, const std::string& origin) {
  const Directory directory = find_directory(bytes, size, origin);
  std::vector<ZipEntry> entries;
  entries.reserve(directory.entries);
  const uint64_t directory_end = directory.offset + directory.size;
  uint64_t at = directory.offset;
  for (uint64_t i = 0; i < directory.entries; ++i) {
    const std::string where = origin + ": zip central directory entry " + std::to_string(i);
    if (!inside(at, kCentralHeaderSize, directory_end) || read_le(bytes + at, 4) != kCentralHeaderSignature)
      throw Error(where + " at byte " + std::to_string(at) + " is not a central directory header (file corrupt)");
    const uint8_t* header = bytes + at;
    const uint64_t flags = read_le(header + 8, 2), method = read_le(header + 10, 2);
    uint64_t compressed = read_le(header + 20, 4), stored = read_le(header + 24, 4);
    const uint64_t name_length = read_le(header + 28, 2), extra_length = read_le(header + 30, 2),
                   comment_length = read_le(header + 32, 2);
    uint64_t local_offset = read_le(header + 42, 4);
    if (!inside(at + kCentralHeaderSize, name_length + extra_length + comment_length, directory_end))
      throw Error(where + ": name and extra fields run past the end of the central directory (file corrupt)");
    ZipEntry entry;
    entry.name.assign(reinterpret_cast<const char*>(header + kCentralHeaderSize), name_length);
    const std::string entry_where = origin + ": zip entry '" + entry.name + "'";
    apply_zip64_extra(header + kCentralHeaderSize + name_length, extra_length, stored, compressed, local_offset,
                      entry_where);
    if (flags & 1) throw Error(entry_where + " is encrypted");
    if (method != 0)
      throw Error(entry_where + " is compressed (method " + std::to_string(method) + ", " + method_name(method) +
                  "); torch.save stores entries uncompressed (method 0): re-save the checkpoint with torch.save");
    if (compressed != stored)
      throw Error(entry_where + " is stored but its compressed size " + std::to_string(compressed) +
                  " differs from its size " + std::to_string(stored));

    // Data starts after the local header's own name and extra field (torch pads the extra to align data to 64).
    if (!inside(local_offset, kLocalHeaderSize, size) || read_le(bytes + local_offset, 4) != kLocalHeaderSignature)
      throw Error(entry_where + ": no local header at byte " + std::to_string(local_offset) + " of " +
                  std::to_string(size) + " (file truncated or corrupt)");
    const uint64_t local_name = read_le(bytes + local_offset + 26, 2), local_extra = read_le(bytes + local_offset + 28, 2);
    entry.data_offset = local_offset + kLocalHeaderSize + local_name + local_extra;
    entry.size = stored;
    if (!inside(entry.data_offset, entry.size, size))
      throw Error(entry_where + ": data [" + std::to_string(entry.data_offset) + ", " +
                  std::to_string(entry.data_offset + entry.size) + ") goes beyond the end of the file (" +
                  std::to_string(size) + " bytes): truncated?");
    if (local_name != name_length ||
        !std::equal(entry.name.begin(), entry.name.end(), bytes + local_offset + kLocalHeaderSize))
      throw Error(entry_where + ": the local header at byte " + std::to_string(local_offset) +
                  " names a different entry (file corrupt)");
    entries.push_back(std::move(entry));
    at += kCentralHeaderSize + name_length + extra_length + comment_length;
  }
  std::sort(entries.begin(), entries.end(), [](const ZipEntry& a, const ZipEntry& b) { return a.name < b.name; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].name == entries[i - 1].name) throw Error(origin + ": zip entry '" + entries[i].name + "' appears twice");
  return entries;
}

const ZipEntry* find_zip_entry(const std::vector<ZipEntry>& entries, const std::string& name) {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const ZipEntry& e, const std::string& n) { return e.name < n; });
  return it != entries.end() && it->name == name ? &*it : nullptr;
}

}  // namespace memsweep
