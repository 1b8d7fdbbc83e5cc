/// @file idem/stores/sqlite.h
/// @brief SqliteStore: records in one SQLite file, shared by the processes of
/// one host; the default store.
///
/// SqliteStore keeps records in one SQLite file (WAL mode): durable across
/// restarts and safe for several processes on one host. It is the default store
/// when IDEM_STORE_URL is unset (see default_store_url()). Waiters
/// (wait_settled, the wrapper's in-progress wait) are woken at once by a
/// verdict written by any SqliteStore of this process on the same file, and
/// notice one written by another process within wait_poll_interval.
///
/// @code
/// auto store = idem::SqliteStore::create({.path = "/var/lib/myapp/idem.db"});
/// auto same = idem::open_store("sqlite:///var/lib/myapp/idem.db");
/// auto only_if_there = idem::open_store("sqlite:///var/lib/myapp/idem.db", {.create_if_missing = false});
/// @endcode
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "idem/core/clock.h"
#include "idem/core/store.h"

namespace idem {

/// Options of SqliteStore::create().
struct SqliteStoreOptions {
  std::string path{};  ///< the database file; parent directories are created
  /// false: open only an existing Idem database. A missing file (or
  /// directory), or a file without the Idem schema, fails with kNotFound and
  /// nothing is written. `idem get/list/stats` open this way.
  bool create_if_missing = true;
  /// How long a statement waits for another process's write lock before the
  /// call fails with kTimeout.
  std::chrono::milliseconds busy_timeout{5'000};
  /// false: synchronous=NORMAL (survives process crashes, not power loss;
  /// the SQLite default for WAL). true: synchronous=FULL.
  bool durable_fsync = false;
  /// Connections kept for concurrent callers in this process.
  std::size_t max_connections = 8;
  /// The clock leases and TTLs are measured against. Every process using
  /// the file must agree on it: keep the system clock outside tests.
  std::shared_ptr<Clock> clock = system_clock();
  /// How often wait_settled() re-reads a record to notice a verdict written
  /// by another process. A verdict written by any store of this process on
  /// the same file (even another instance) wakes waiters at once. Clamped to
  /// [1 ms, kMaxLease].
  std::chrono::milliseconds wait_poll_interval{20};
};

/// Factory of SQLite stores; the stores themselves are used through the
/// Store interface.
class SqliteStore {
 public:
  /// Opens (and, unless options.create_if_missing is false, creates) the
  /// database at options.path. kInvalidConfiguration for an empty path
  /// or a file written by a newer Idem;
  /// kNotFound as create_if_missing says; kUnavailable or kCorrupt when the
  /// file cannot be opened or is not a usable database.
  static Result<std::shared_ptr<Store>> create(SqliteStoreOptions options);
  /// Accepts "sqlite:///absolute/path.db" and "sqlite://relative/path.db",
  /// with optional query "?busy_timeout_ms=N&fsync=full|normal&max_connections=N".
  /// options.create_if_missing sets SqliteStoreOptions::create_if_missing.
  /// Bad URLs are kInvalidConfiguration.
  static Result<std::shared_ptr<Store>> open(std::string_view url, const OpenOptions& options = {});
};

}  // namespace idem
