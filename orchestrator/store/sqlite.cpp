#include "orchestrator/store/sqlite.h"

#include <sqlite3.h>

#include <filesystem>

#include "worker/base/error.h"
#include "worker/base/log.h"

namespace memsweep {

Statement::~Statement() {
  if (statement_) {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
}

Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(statement_, index, value) != SQLITE_OK) db_->fail("binding an integer");
  return *this;
}
Statement& Statement::bind(int index, double value) {
  if (sqlite3_bind_double(statement_, index, value) != SQLITE_OK) db_->fail("binding a number");
  return *this;
}
Statement& Statement::bind(int index, const std::string& value) {
  if (sqlite3_bind_text(statement_, index, value.data(), int(value.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    db_->fail("binding a text");
  return *this;
}
Statement& Statement::bind_blob(int index, const std::string& bytes) {
  if (sqlite3_bind_blob64(statement_, index, bytes.data(), sqlite3_uint64(bytes.size()), SQLITE_TRANSIENT) != SQLITE_OK)
    db_->fail("binding a blob");
  return *this;
}
Statement& Statement::bind_null(int index) {
  if (sqlite3_bind_null(statement_, index) != SQLITE_OK) db_->fail("binding null");
  return *this;
}

bool Statement::step() {
  const int status = sqlite3_step(statement_);
  if (status == SQLITE_ROW) return true;
  if (status == SQLITE_DONE) return false;
  const std::string sql = sqlite3_sql(statement_);
  sqlite3_reset(statement_);
  db_->fail("running '" + sql + "'");
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

int64_t Statement::integer(int column) const { return sqlite3_column_int64(statement_, column); }
double Statement::real(int column) const { return sqlite3_column_double(statement_, column); }
std::string Statement::text(int column) const {
  const unsigned char* text = sqlite3_column_text(statement_, column);
  return text ? std::string(reinterpret_cast<const char*>(text), size_t(sqlite3_column_bytes(statement_, column))) : std::string();
}
std::string Statement::blob(int column) const {
  const void* bytes = sqlite3_column_blob(statement_, column);
  return bytes ? std::string(static_cast<const char*>(bytes), size_t(sqlite3_column_bytes(statement_, column))) : std::string();
}
bool Statement::is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }

Database::Database(const std::string& path, bool read_only) : path_(path) {
  if (!read_only) {  // a new study's results folder: made here, not found missing after the queue wait
    const std::filesystem::path folder = std::filesystem::path(path).parent_path();
    std::error_code error;
    if (!folder.empty() && !std::filesystem::is_directory(folder) && !std::filesystem::create_directories(folder, error) && error)
      throw Error("cannot create the store's folder " + folder.string() + ": " + error.message());
  }
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("cannot open the store " + path + ": " + message);
  }
  sqlite3_extended_result_codes(db_, 1);
  // SQLite silently opens a write-protected file read-only; say so now rather than at the first write.
  if (!read_only && sqlite3_db_readonly(db_, "main") == 1) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("cannot open the store " + path + " for writing: the file or its file system is read-only");
  }
}

Database::~Database() {
  for (auto& [sql, statement] : cache_) sqlite3_finalize(statement);
  if (sqlite3_close(db_) != SQLITE_OK) log_error("closing the store " + path_ + ": " + sqlite3_errmsg(db_));
}

void Database::fail(const std::string& what) const {
  throw Error("store " + path_ + ": " + what + ": " + sqlite3_errmsg(db_) + " (SQLite code " +
              std::to_string(sqlite3_extended_errcode(db_)) + ")");
}

void Database::backup_into(Database& destination) {
  sqlite3_backup* backup = sqlite3_backup_init(destination.db_, "main", db_, "main");
  if (!backup) destination.fail("backup of " + path_ + " into it");
  // Busy or locked: a reader holds the source; retry a little instead of failing a checkpoint.
  int status = SQLITE_OK;
  for (int tries = 0; tries < 100; ++tries) {
    status = sqlite3_backup_step(backup, -1);
    if (status != SQLITE_BUSY && status != SQLITE_LOCKED) break;
    sqlite3_sleep(50);
  }
  sqlite3_backup_finish(backup);
  if (status != SQLITE_DONE) destination.fail("backup of " + path_ + " into it");
}

Statement Database::prepare(const std::string& sql) {
  auto found = cache_.find(sql);
  if (found == cache_.end()) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), int(sql.size()), SQLITE_PREPARE_PERSISTENT, &statement, nullptr) != SQLITE_OK)
      fail("preparing '" + sql + "'");
    found = cache_.emplace(sql, statement).first;
  }
  return Statement(*this, found->second);
}

void Database::execute_script(const std::string& sql, const std::string& what) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    throw Error("store " + path_ + ": " + what + ": " + text);
  }
}

int64_t Database::last_insert_id() const { return sqlite3_last_insert_rowid(db_); }
int Database::changes() const { return sqlite3_changes(db_); }

Transaction::Transaction(Database& db) : db_(db) { db_.prepare("BEGIN IMMEDIATE").run(); }

Transaction::~Transaction() {
  if (done_) return;
  // Never throws from a destructor: a failed rollback is logged (SQLite rolls back itself on close).
  if (sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK)
    log_error("store " + db_.path() + ": rollback failed: " + sqlite3_errmsg(db_.handle()));
}

void Transaction::commit() {
  db_.prepare("COMMIT").run();
  done_ = true;
}

}  // namespace memsweep
