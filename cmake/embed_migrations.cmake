# Writes a C++ file holding every schemas/migrations/NNNN_name.sql as a raw string, in version order, so the
# binary carries its schema. Run at configure time; CMAKE_CONFIGURE_DEPENDS re-runs it when a file changes.
function(memsweep_embed_migrations output)
  file(GLOB files CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/schemas/migrations/*.sql")
  list(SORT files)
  set(entries "")
  set(expected 1)
  foreach(file ${files})
    get_filename_component(name ${file} NAME)
    if(NOT name MATCHES "^([0-9][0-9][0-9][0-9])_[a-z0-9_]+\\.sql$")
      message(FATAL_ERROR "migration ${name}: the name must be NNNN_words.sql")
    endif()
    math(EXPR version "${CMAKE_MATCH_1}")
    if(NOT version EQUAL expected)
      message(FATAL_ERROR "migration ${name}: expected version ${expected} (migrations are numbered 1, 2, ... without gaps)")
    endif()
    math(EXPR expected "${expected} + 1")
    file(READ ${file} sql)
    string(APPEND entries "      {${version}, \"${name}\", R\"memsweep_sql(${sql})memsweep_sql\"},\n")
  endforeach()
  file(CONFIGURE OUTPUT ${output} CONTENT "// Generated from schemas/migrations by cmake/embed_migrations.cmake; do not edit.
#include \"orchestrator/store/migrations.h\"

namespace memsweep {
const std::vector<Migration>& embedded_migrations() {
  static const std::vector<Migration> migrations = {
${entries}  };
  return migrations;
}
}  // namespace memsweep
" @ONLY)
endfunction()
