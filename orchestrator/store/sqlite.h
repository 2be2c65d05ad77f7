#pragma once
// A thin SQLite wrapper: a connection with a cache of prepared statements, statements that reset themselves
// when the caller is done, and transactions that roll back in their destructor unless committed.
// SQL text comes only from string literals and the embedded migrations, never assembled from values: every
// value is bound. Errors are memsweep::Error with SQLite's message and the statement.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace memsweep {

class Database;

// A cached prepared statement in use. Bind parameters (1-based), step, read columns; destruction resets it
// for the next user. REQUIRES: the Database outlives it.
class Statement {
 public:
  Statement(Database& db, sqlite3_stmt* statement) : db_(&db), statement_(statement) {}
  Statement(Statement&& other) noexcept : db_(other.db_), statement_(other.statement_) { other.statement_ = nullptr; }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, int value) { return bind(index, int64_t(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, const std::string& value);
  Statement& bind(int index, const char* value) { return bind(index, std::string(value)); }
  Statement& bind_blob(int index, const std::string& bytes);
  Statement& bind_null(int index);
  // True while a row is available; false when done.
  bool step();
  // Runs a statement that returns no rows, then resets it so it can be bound again.
  void run();
  void reset();

  int64_t integer(int column) const;
  double real(int column) const;
  std::string text(int column) const;
  std::string blob(int column) const;
  bool is_null(int column) const;

 private:
  Database* db_;
  sqlite3_stmt* statement_;
};

class Database {
 public:
  // ":memory:" for an in-memory database. Creates the file when absent unless read_only.
  explicit Database(const std::string& path, bool read_only = false);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // `sql` must be a string literal or embedded schema text (the cache keys on its contents).
  Statement prepare(const std::string& sql);
  // Runs several statements (a migration script); no values bound.
  void execute_script(const std::string& sql, const std::string& what);
  // Copies this whole database into `destination` with SQLite's online backup API (a consistent snapshot even
  // while other connections read). REQUIRES: no write transaction open on this connection.
  void backup_into(Database& destination);
  int64_t last_insert_id() const;
  int changes() const;
  const std::string& path() const { return path_; }
  [[noreturn]] void fail(const std::string& what) const;
  sqlite3* handle() { return db_; }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE on construction (the write lock is taken at once, so a second writer fails here, not
// half-way); ROLLBACK in the destructor unless commit() ran.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace memsweep
