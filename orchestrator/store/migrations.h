#pragma once
// The store's migrations, schemas/migrations/NNNN_name.sql, embedded at build time (cmake/embed_migrations.cmake)
// in version order. A migration is applied once, in a transaction, and recorded in schema_version.
#include <vector>

namespace memsweep {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

const std::vector<Migration>& embedded_migrations();

}  // namespace memsweep
