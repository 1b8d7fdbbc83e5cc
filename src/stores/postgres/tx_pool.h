// File: src/stores/postgres/tx_pool.h
//
// TxPool lends blocking libpq connections to transactional mode: each one
// holds one open transaction while a handler runs on the caller's thread, so
// they cannot be the I/O thread's pipelined connections.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "idem/core/error.h"
#include "idem/core/store.h"
#include "idem/stores/postgres.h"
#include "stores/postgres/circuit_breaker.h"
#include "stores/postgres/connection.h"

namespace idem::pg {

struct TxConn {
  ConnPtr pg;
  bool prepared = false;  // the fenced completion statement is prepared
};

class TxPool {
 public:
  // `complete_sql` is the rendered completion statement (sql.h kCompleteSql);
  // `breaker` is the store's, which begin() consults too.
  TxPool(PostgresStoreOptions options, std::string target, std::string complete_sql,
         std::shared_ptr<CircuitBreaker> breaker);
  TxPool(const TxPool&) = delete;
  TxPool& operator=(const TxPool&) = delete;

  // acquire() returns an idle connection, or opens one while fewer than
  // max_transactions are open, or waits up to connect_timeout for one.
  Result<std::unique_ptr<TxConn>> acquire();
  // release() keeps a healthy connection outside any transaction for the
  // next caller and closes anything else.
  void release(std::unique_ptr<TxConn> conn) noexcept;
  // adopt() seeds the pool with an open connection (the one that set up
  // the schema).
  void adopt(ConnPtr conn);

  const std::string& target() const noexcept { return target_; }
  const std::string& complete_sql() const noexcept { return complete_sql_; }
  const PostgresStoreOptions& options() const noexcept { return options_; }
  CircuitBreaker& breaker() const noexcept { return *breaker_; }

 private:
  PostgresStoreOptions options_;
  std::string target_;
  std::string complete_sql_;
  std::shared_ptr<CircuitBreaker> breaker_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<TxConn>> idle_;  // guarded by mutex_
  std::size_t open_ = 0;                       // guarded by mutex_
};

// tx_pool_of() returns the pool of a store made by PostgresStore, or null.
std::shared_ptr<TxPool> tx_pool_of(Store& store);

}  // namespace idem::pg
