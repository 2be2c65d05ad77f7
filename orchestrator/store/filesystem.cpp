#include "orchestrator/store/filesystem.h"

#include <sys/vfs.h>

namespace memsweep {

std::string network_filesystem_for_magic(int64_t f_type) {
  struct Known {
    uint32_t magic;
    const char* name;
  };
  // From linux/magic.h and the file systems' own headers (Lustre, GPFS, BeeGFS are out of tree).
  static const Known kNetwork[] = {
      {0x6969, "NFS"},           {0x0BD00BD0, "Lustre"}, {0x47504653, "GPFS"},     {0xFF534D42, "CIFS"},
      {0xFE534D42, "SMB2"},      {0x517B, "SMB"},        {0x00C36400, "CephFS"},   {0x19830326, "BeeGFS"},
      {0x013111A8, "IBRIX"},     {0x6B414653, "AFS"},    {0x5346414F, "OpenAFS"},  {0x01161970, "GFS2"},
      {0x7461636f, "OCFS2"},     {0xAAD7AAEA, "PanFS"},
  };
  for (const Known& k : kNetwork)
    if (uint32_t(f_type) == k.magic) return k.name;
  return "";
}

std::string network_filesystem_name(const std::string& folder) {
  struct statfs info {};
  if (statfs(folder.c_str(), &info) != 0) return "";
  return network_filesystem_for_magic(int64_t(info.f_type));
}

}  // namespace memsweep
