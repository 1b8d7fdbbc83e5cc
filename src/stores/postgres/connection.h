// File: src/stores/postgres/connection.h
//
// RAII handles for libpq objects, the connection parameters of a store, and
// the one function that turns libpq and server errors into Idem errors.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "idem/stores/postgres.h"

namespace idem::pg {

struct ConnCloser {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;

struct ResultClearer {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultClearer>;

// ConnParams holds libpq keyword/value arrays built from the options (the
// password included: it is only ever handed to libpq).
class ConnParams {
 public:
  // `blocking_timeout`: also pass libpq's connect_timeout (whole seconds),
  // which libpq applies only to its blocking connect.
  ConnParams(const PostgresStoreOptions& options, bool blocking_timeout);
  // The arrays point into the strings: never copied.
  ConnParams(const ConnParams&) = delete;
  ConnParams& operator=(const ConnParams&) = delete;
  const char* const* keywords() const noexcept { return keyword_ptrs_.data(); }
  const char* const* values() const noexcept { return value_ptrs_.data(); }

 private:
  void add(std::string key, std::string value);
  std::vector<std::string> keys_;
  std::vector<std::string> values_;
  std::vector<const char*> keyword_ptrs_;
  std::vector<const char*> value_ptrs_;
};

// describe_target() is "user@host:port/dbname" for messages (never the
// password), with libpq's defaults shown as such.
std::string describe_target(const PostgresStoreOptions& options);

// Who wrote the statement that failed: the store's own SQL, or a handler's
// (PostgresTransaction::exec); a syntax error means different things.
enum class SqlOrigin : std::uint8_t { kStore, kUser };

// result_error() translates a failed result (or, when `result` is null, the
// connection's last error) into an Idem error whose message says what
// happened and what to do. `what` names the operation ("claiming a key").
Error result_error(const PGresult* result, const PGconn* conn, std::string_view what, std::string_view target,
                   SqlOrigin origin = SqlOrigin::kStore);

// connection_error() is kUnavailable for a connection that failed or broke.
Error connection_error(const PGconn* conn, std::string_view what, std::string_view target);

// The SQLSTATE of a failed result, or "" when there is none.
std::string sqlstate_of(const PGresult* result);

// quiet() drops the server's NOTICEs ("relation already exists, skipping")
// that libpq would print on stderr.
void quiet(PGconn* conn) noexcept;

// Trims libpq's messages (trailing newlines, "ERROR:  " prefixes).
std::string trim_message(const char* message);

}  // namespace idem::pg
