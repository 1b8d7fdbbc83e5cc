// File: src/stores/postgres/transaction.cpp
//
// Transactional mode: PostgresTransaction (a thin handle over a pooled
// blocking connection), complete_in_transaction() for the guard, and
// PostgresTransactionalProcessor.
//
// The fence: the COMPLETED record is written by an UPDATE that matches only
// while the claim's token still owns the key, as the last statement before
// COMMIT. READ COMMITTED re-checks that condition on the latest row version
// under the row lock, so a takeover that committed first makes the UPDATE
// match nothing and everything is rolled back; a takeover that comes later
// waits for the lock and then finds the key COMPLETED. Doing it last keeps
// the record's row lock for one round trip only: a duplicate that arrives
// meanwhile waits for the commit, not for the handler.
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>
#include <vector>

#include "idem/stores/postgres.h"
#include "stores/postgres/codec.h"
#include "stores/postgres/connection.h"
#include "stores/postgres/sql.h"
#include "stores/postgres/tx_pool.h"

namespace idem {
namespace pg {

TxPool::TxPool(PostgresStoreOptions options, std::string target, std::string complete_sql,
               std::shared_ptr<CircuitBreaker> breaker)
    : options_(std::move(options)),
      target_(std::move(target)),
      complete_sql_(std::move(complete_sql)),
      breaker_(std::move(breaker)) {}

Result<std::unique_ptr<TxConn>> TxPool::acquire() {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
  for (;;) {
    if (!idle_.empty()) {
      std::unique_ptr<TxConn> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    if (open_ < options_.max_transactions) {
      ++open_;
      lock.unlock();
      ConnPtr conn;
      {
        const ConnParams params(options_, true);
        conn.reset(PQconnectdbParams(params.keywords(), params.values(), 0));
      }
      if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
        Error e = connection_error(conn.get(), "connecting for a transaction", target_);
        conn.reset();
        lock.lock();
        --open_;
        freed_.notify_one();
        return e;
      }
      quiet(conn.get());
      auto c = std::make_unique<TxConn>();
      c->pg = std::move(conn);
      return c;
    }
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.max_transactions) {
      return Error(ErrorCode::kTimeout, "postgresql: all " + std::to_string(options_.max_transactions) +
                                            " transaction connections (" + target_ + ") stayed busy for " +
                                            std::to_string(options_.connect_timeout.count()) +
                                            " ms; raise max_transactions or make handlers shorter");
    }
  }
}

void TxPool::release(std::unique_ptr<TxConn> conn) noexcept {
  if (!conn) return;
  const bool keep =
      conn->pg && PQstatus(conn->pg.get()) == CONNECTION_OK && PQtransactionStatus(conn->pg.get()) == PQTRANS_IDLE;
  {
    std::lock_guard lock(mutex_);
    if (keep) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
  }
  freed_.notify_one();
  // A connection not kept is closed here, outside the lock.
}

void TxPool::adopt(ConnPtr conn) {
  auto c = std::make_unique<TxConn>();
  c->pg = std::move(conn);
  std::lock_guard lock(mutex_);
  ++open_;
  idle_.push_back(std::move(c));
}

}  // namespace pg

namespace {

using SteadyClock = std::chrono::steady_clock;

// An answer from a blocking connection, waited for up to a deadline.
struct Answer {
  pg::ResultPtr result;    // the first failed result, else the last one
  bool timed_out = false;  // no complete answer by the deadline
};

// await_answer() collects the results of what was just sent on `c`, but
// gives up at `deadline` (libpq's blocking calls would wait forever on a
// server that stopped answering). After a time-out the connection is in an
// unknown state: the caller must close it.
Answer await_answer(PGconn* c, SteadyClock::time_point deadline) {
  Answer a;
  while (PQisBusy(c) == 1) {
    int wait_ms = -1;
    if (deadline != SteadyClock::time_point::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) {
        a.timed_out = true;
        return a;
      }
      wait_ms = static_cast<int>(std::min<long long>(left.count(), INT_MAX));
    }
    pollfd p{PQsocket(c), POLLIN, 0};
    const int rc = ::poll(&p, 1, wait_ms);
    if (rc < 0 && errno != EINTR) break;  // PQgetResult reports the broken connection
    if (rc > 0 && PQconsumeInput(c) != 1) break;
  }
  while (PGresult* r = PQgetResult(c)) {
    pg::ResultPtr result(r);
    const ExecStatusType st = PQresultStatus(r);
    const bool failed = st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY;
    const bool have_failure = a.result && PQresultStatus(a.result.get()) != PGRES_COMMAND_OK &&
                              PQresultStatus(a.result.get()) != PGRES_TUPLES_OK &&
                              PQresultStatus(a.result.get()) != PGRES_EMPTY_QUERY;
    if (!have_failure) a.result = std::move(result);
    if (failed && (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)) break;
  }
  return a;
}

// The client deadline of one statement under `statement_timeout`: the server
// cancels the statement itself at the timeout; this is for a server that
// answers nothing at all.
SteadyClock::time_point deadline_for(std::chrono::milliseconds statement_timeout) {
  if (statement_timeout.count() <= 0) return SteadyClock::time_point::max();
  const auto grace = std::max<std::chrono::milliseconds>(std::chrono::seconds(1), statement_timeout / 4);
  return SteadyClock::now() + statement_timeout + grace;
}

Error no_answer(std::string_view what, std::chrono::milliseconds statement_timeout, const std::string& target,
                bool outcome_unknown) {
  std::string msg = "postgresql: " + std::string(what) + " (" + target + "): no answer within the statement timeout (" +
                    std::to_string(statement_timeout.count()) + " ms) and its grace; the connection was closed";
  msg += outcome_unknown ? ", and whether the commit happened is unknown (a redelivery finds the key COMPLETED or "
                           "takes it over once its lease runs out)"
                         : " and the server rolls the transaction back; retry";
  return Error(ErrorCode::kTimeout, std::move(msg));
}

Error closed_transaction() {
  return Error(ErrorCode::kInvalidConfiguration,
               "postgresql: the transaction is closed (already committed or rolled back); begin a new one");
}

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// --- PostgresRows --------------------------------------------------------------

std::size_t PostgresRows::rows() const noexcept {
  return result_ ? static_cast<std::size_t>(PQntuples(result_.get())) : 0;
}
std::size_t PostgresRows::columns() const noexcept {
  return result_ ? static_cast<std::size_t>(PQnfields(result_.get())) : 0;
}
std::optional<std::string_view> PostgresRows::value(std::size_t row, std::size_t column) const {
  if (row >= rows() || column >= columns()) return std::nullopt;
  const int r = static_cast<int>(row);
  const int c = static_cast<int>(column);
  if (PQgetisnull(result_.get(), r, c) != 0) return std::nullopt;
  return std::string_view(PQgetvalue(result_.get(), r, c), static_cast<std::size_t>(PQgetlength(result_.get(), r, c)));
}
std::string_view PostgresRows::column_name(std::size_t column) const {
  if (column >= columns()) return {};
  const char* name = PQfname(result_.get(), static_cast<int>(column));
  return name == nullptr ? std::string_view() : std::string_view(name);
}
std::uint64_t PostgresRows::affected() const noexcept {
  if (!result_) return 0;
  const char* n = PQcmdTuples(result_.get());
  std::uint64_t v = 0;
  for (const char* p = n; p != nullptr && *p >= '0' && *p <= '9'; ++p)
    v = v * 10 + static_cast<std::uint64_t>(*p - '0');
  return v;
}

// --- PostgresTransaction --------------------------------------------------------

struct PostgresTransaction::Impl {
  std::shared_ptr<pg::TxPool> pool;
  std::unique_ptr<pg::TxConn> conn;
  std::string last_sqlstate;
  std::chrono::milliseconds statement_timeout{0};  // 0: none

  ~Impl() { close(true); }
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  bool open() const noexcept { return conn != nullptr; }
  PGconn* pg() const noexcept { return conn ? conn->pg.get() : nullptr; }

  // Waits for the answer of what was just sent; on a time-out, or when the
  // connection broke, the breaker hears of a call without an answer (and
  // of an answer otherwise).
  Answer await(SteadyClock::time_point deadline) {
    Answer a = await_answer(pg(), deadline);
    pool->breaker().record(!a.timed_out && PQstatus(pg()) != CONNECTION_BAD);
    return a;
  }

  // Drops a connection in an unknown state (a time-out): the pool closes it.
  void abandon() noexcept {
    if (!conn) return;
    conn->pg.reset();
    pool->release(std::move(conn));
  }

  // Ends the transaction (rolling back when asked) and returns the
  // connection; a connection left in a transaction is closed by the pool.
  void close(bool roll_back) noexcept {
    if (!conn) return;
    if (roll_back && PQstatus(pg()) == CONNECTION_OK && PQtransactionStatus(pg()) != PQTRANS_IDLE) {
      // Bounded like any store call: a server that stopped answering must
      // not hang the handler's thread in a destructor.
      if (PQsendQuery(pg(), "ROLLBACK") != 1 ||
          await_answer(pg(), SteadyClock::now() + pool->options().connect_timeout).timed_out) {
        conn->pg.reset();
      }
    }
    pool->release(std::move(conn));
  }

  Status commit() {
    Answer a;
    if (PQsendQuery(pg(), "COMMIT") == 1) {
      a = await(deadline_for(statement_timeout));
      if (a.timed_out) {
        abandon();
        return no_answer("committing the transaction", statement_timeout, pool->target(), true);
      }
    }
    pg::ResultPtr r = std::move(a.result);
    const bool sent_ok = r && PQresultStatus(r.get()) == PGRES_COMMAND_OK;
    if (sent_ok && std::string_view(PQcmdStatus(r.get())) == "COMMIT") {
      close(false);
      return ok_status();
    }
    Error e =
        sent_ok ? Error(ErrorCode::kInvalidConfiguration,
                        "postgresql: the transaction was rolled back at COMMIT because an earlier statement "
                        "failed (SQLSTATE " +
                            (last_sqlstate.empty() ? std::string("unknown") : last_sqlstate) + ")")
        : PQstatus(pg()) == CONNECTION_BAD
            ? Error(ErrorCode::kUnavailable,
                    "postgresql: the connection (" + pool->target() +
                        ") broke during COMMIT: the outcome is unknown. If it committed, the key is COMPLETED and "
                        "a redelivery is a duplicate; if not, the key is taken over when its lease runs out")
            : pg::result_error(r.get(), pg(), "committing the transaction", pool->target(), pg::SqlOrigin::kUser);
    close(true);
    return e;
  }
};

PostgresTransaction::PostgresTransaction(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
PostgresTransaction::PostgresTransaction(PostgresTransaction&&) noexcept = default;
PostgresTransaction& PostgresTransaction::operator=(PostgresTransaction&&) noexcept = default;
PostgresTransaction::~PostgresTransaction() = default;

Result<PostgresTransaction> PostgresTransaction::begin(Store& store) {
  std::shared_ptr<pg::TxPool> pool = pg::tx_pool_of(store);
  if (!pool) {
    return Error(ErrorCode::kInvalidConfiguration, "postgresql: transactional mode needs a PostgreSQL store, not a '" +
                                                       std::string(store.kind()) + "' store");
  }
  pg::CircuitBreaker& breaker = pool->breaker();
  if (!breaker.allow()) return pg::circuit_open_error(breaker, pool->target());
  const std::chrono::milliseconds timeout = pool->options().transaction_statement_timeout;
  // One round trip: the transaction and its statement bound.
  const std::string begin_sql =
      timeout.count() > 0 ? "BEGIN; SET LOCAL statement_timeout = " + std::to_string(timeout.count()) : "BEGIN";
  for (int attempt = 0;; ++attempt) {
    Result<std::unique_ptr<pg::TxConn>> conn = pool->acquire();
    if (!conn) {
      breaker.record(false);
      return std::move(conn).error();
    }
    auto impl = std::make_unique<Impl>();
    impl->pool = pool;
    impl->conn = std::move(*conn);
    impl->statement_timeout = timeout;
    PGconn* c = impl->pg();
    Answer a;
    if (PQsendQuery(c, begin_sql.c_str()) == 1) a = impl->await(deadline_for(timeout));
    if (a.timed_out) {
      impl->abandon();
      return no_answer("starting a transaction", timeout, pool->target(), false);
    }
    if (a.result && PQresultStatus(a.result.get()) == PGRES_COMMAND_OK) return PostgresTransaction(std::move(impl));
    Error e = pg::result_error(a.result.get(), c, "starting a transaction", pool->target());
    // An idle pooled connection may have died (the server restarted): the
    // pool drops it on release; one fresh connection is worth a try.
    const bool broken = PQstatus(c) == CONNECTION_BAD;
    impl->close(true);
    if (!broken || attempt > 0) return e;
  }
}

Status PostgresTransaction::set_statement_timeout(std::chrono::milliseconds timeout) {
  if (!impl_ || !impl_->open()) return closed_transaction();
  if (timeout.count() < 0 || timeout > std::chrono::milliseconds(INT_MAX)) {
    return Error(ErrorCode::kInvalidArgument, "postgresql: a statement timeout must be between 0 and 2^31-1 ms");
  }
  Result<PostgresRows> r = exec("SET LOCAL statement_timeout = " + std::to_string(timeout.count()));
  if (!r) return std::move(r).error();
  impl_->statement_timeout = timeout;
  return ok_status();
}

Result<PostgresRows> PostgresTransaction::exec(std::string_view sql, std::initializer_list<Param> params) {
  return exec(sql, std::span<const Param>(params.begin(), params.size()));
}

Result<PostgresRows> PostgresTransaction::exec(std::string_view sql, std::span<const Param> params) {
  if (!impl_ || !impl_->open()) return closed_transaction();
  if (params.size() > 65535) return Error(ErrorCode::kInvalidConfiguration, "postgresql: more than 65535 parameters");
  // Text-format parameters are C strings: copy them to terminate them.
  std::vector<std::string> owned;
  owned.reserve(params.size());
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) {
    if (p && p->find('\0') != std::string_view::npos) {
      return Error(ErrorCode::kInvalidArgument,
                   "postgresql: a text parameter contains a NUL byte; pass binary data hex-encoded ('\\x...')");
    }
    owned.emplace_back(p ? *p : std::string_view());
  }
  for (std::size_t i = 0; i < params.size(); ++i) values.push_back(params[i] ? owned[i].c_str() : nullptr);
  const std::string text(sql);
  const std::chrono::milliseconds timeout = impl_->statement_timeout;
  Answer a;
  if (PQsendQueryParams(impl_->pg(), text.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                        nullptr, 0) == 1) {
    a = impl_->await(deadline_for(timeout));
  }
  if (a.timed_out) {
    impl_->abandon();
    return no_answer("running a statement of the transaction", timeout, impl_->pool->target(), false);
  }
  pg::ResultPtr r = std::move(a.result);
  const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
    PostgresRows rows;
    rows.result_ = std::shared_ptr<pg_result>(r.release(), PQclear);
    return rows;
  }
  impl_->last_sqlstate = pg::sqlstate_of(r.get());
  if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "postgresql: COPY is not supported through exec(); use native_handle()");
  }
  return pg::result_error(r.get(), impl_->pg(), "running a statement of the transaction", impl_->pool->target(),
                          pg::SqlOrigin::kUser);
}

Status PostgresTransaction::commit_completed(const CompleteRequest& completion) {
  if (!impl_ || !impl_->open()) return closed_transaction();
  Impl& t = *impl_;
  PGconn* c = t.pg();
  auto fail = [&](Error e) -> Status {
    t.close(true);
    return e;
  };
  if (PQtransactionStatus(c) == PQTRANS_INERROR) {
    return fail(Error(ErrorCode::kInvalidConfiguration,
                      "postgresql: an earlier statement of the transaction failed (SQLSTATE " + t.last_sqlstate +
                          "); everything was rolled back and the key was not completed"));
  }
  if (completion.key.empty() || !pg::valid_utf8(completion.key)) {
    return fail(Error(ErrorCode::kInvalidArgument, "postgresql: the completion's key is empty or not valid UTF-8"));
  }
  if (completion.result.size() >= (std::size_t{1} << 30)) {
    return fail(Error(ErrorCode::kInvalidArgument, "postgresql: the result is above PostgreSQL's 1 GiB limit"));
  }
  constexpr const char* kName = "idem_tx_complete";
  const postgres_sql::StatementDef& def = postgres_sql::statement(postgres_sql::Stmt::kComplete);
  if (!t.conn->prepared) {
    Answer prepared;
    if (PQsendPrepare(c, kName, t.pool->complete_sql().c_str(), def.params, def.types.data()) == 1) {
      prepared = t.await(deadline_for(t.statement_timeout));
    }
    if (prepared.timed_out) {
      t.abandon();
      return no_answer("preparing the completion", t.statement_timeout, t.pool->target(), false);
    }
    pg::ResultPtr p = std::move(prepared.result);
    if (!p || PQresultStatus(p.get()) != PGRES_COMMAND_OK) {
      return fail(pg::result_error(p.get(), c, "preparing the completion", t.pool->target()));
    }
    t.conn->prepared = true;
  }
  const std::string token = pg::encode_int8(static_cast<std::int64_t>(completion.token));
  const auto ttl_ms = std::clamp<std::int64_t>(completion.ttl.count(), 0, 100LL * 365 * 24 * 3600 * 1000);
  const std::string ttl = pg::encode_int8(ttl_ms);
  const std::string in_tx = pg::encode_bool(true);
  const std::array<const char*, 5> values = {completion.key.data(), token.data(),
                                             completion.result.empty() ? "" : completion.result.data(), ttl.data(),
                                             in_tx.data()};
  const std::array<int, 5> lengths = {static_cast<int>(completion.key.size()), 8,
                                      static_cast<int>(completion.result.size()), 8, 1};
  const std::array<int, 5> formats = {1, 1, 1, 1, 1};
  Answer a;
  if (PQsendQueryPrepared(c, kName, 5, values.data(), lengths.data(), formats.data(), 1) == 1) {
    a = t.await(deadline_for(t.statement_timeout));
  }
  if (a.timed_out) {
    t.abandon();
    return no_answer("completing the record in the transaction", t.statement_timeout, t.pool->target(), false);
  }
  pg::ResultPtr r = std::move(a.result);
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    return fail(pg::result_error(r.get(), c, "completing the record in the transaction", t.pool->target()));
  }
  const std::optional<std::int32_t> written =
      PQntuples(r.get()) == 1 && PQgetisnull(r.get(), 0, 0) == 0
          ? pg::decode_int4(
                std::string_view(PQgetvalue(r.get(), 0, 0), static_cast<std::size_t>(PQgetlength(r.get(), 0, 0))))
          : std::nullopt;
  if (!written) return fail(Error(ErrorCode::kInternal, "postgresql: unexpected answer to the fenced completion"));
  if (*written != 1) {
    return fail(Error(ErrorCode::kLeaseLost,
                      "postgresql: lease lost on key '" + std::string(completion.key) + "' (token " +
                          std::to_string(completion.token) +
                          "): a newer owner took it over, or it is no longer PROCESSING; the whole transaction was "
                          "rolled back, nothing was written"));
  }
  return t.commit();
}

Status PostgresTransaction::commit() {
  if (!impl_ || !impl_->open()) return closed_transaction();
  return impl_->commit();
}

void PostgresTransaction::rollback() noexcept {
  if (impl_) impl_->close(true);
}

bool PostgresTransaction::open() const noexcept { return impl_ && impl_->open(); }

const std::string& PostgresTransaction::last_sqlstate() const noexcept {
  static const std::string kEmpty;
  return impl_ ? impl_->last_sqlstate : kEmpty;
}

pg_conn* PostgresTransaction::native_handle() const noexcept { return impl_ ? impl_->pg() : nullptr; }

// --- The guard and the processor -------------------------------------------------

std::string complete_in_transaction(const IdempotencyChecker& checker, ProcessingContext& ctx,
                                    const std::function<std::string(PostgresTransaction&)>& work) {
  if (!ctx.should_process() || ctx.finished()) {
    throw ConfigurationError(Error(
        ErrorCode::kInvalidConfiguration,
        "complete_in_transaction on key '" + ctx.key() + "', which this worker does not own or already finished"));
  }
  if (ctx.is_unprotected()) {
    throw StoreUnavailableError(Error(ErrorCode::kUnavailable,
                                      "postgresql: the store is unavailable (fail-open); transactional mode cannot run "
                                      "without the database"));
  }
  Result<PostgresTransaction> tx = PostgresTransaction::begin(checker.store());
  if (!tx) throw_error(std::move(tx).error());
  std::string result = work(*tx);  // throws: the transaction rolls back as `tx` unwinds
  if (result.size() > checker.options().max_result_bytes) {
    tx->rollback();
    throw ResultTooLargeError(Error(ErrorCode::kResultTooLarge, "result is " + std::to_string(result.size()) +
                                                                    " bytes, above max_result_bytes=" +
                                                                    std::to_string(checker.options().max_result_bytes) +
                                                                    "; the transaction was rolled back"));
  }
  Status committed =
      tx->commit_completed({.key = ctx.key(), .token = ctx.token(), .result = result, .ttl = checker.options().ttl});
  if (!committed) throw_error(std::move(committed).error());
  // Committed. Finishing the guard is bookkeeping: the store answers its
  // completion as a confirmation of this token's own transactional
  // completion (one round trip, nothing written). If that fails, the record
  // is COMPLETED all the same.
  try {
    ctx.mark_completed(result);
  } catch (const IdemError&) {  // NOLINT(bugprone-empty-catch): see above
  }
  return result;
}

PostgresTransactionalProcessor::PostgresTransactionalProcessor(std::shared_ptr<IdempotencyChecker> checker,
                                                               ProcessorOptions options)
    : processor_(checker, std::move(options)) {
  if (!PostgresStore::is_postgres(processor_.checker()->store())) {
    throw ConfigurationError(Error(ErrorCode::kInvalidConfiguration,
                                   "PostgresTransactionalProcessor needs a checker on a PostgreSQL store, not a '" +
                                       std::string(processor_.checker()->store().kind()) + "' store"));
  }
}

TransactionalOutcome PostgresTransactionalProcessor::process(const Envelope& envelope,
                                                             const TransactionalHandler& handler) {
  ProcessingContext ctx = processor_.process(envelope);
  TransactionalOutcome out;
  out.key = ctx.key();
  out.status = ctx.status();
  if (!ctx.should_process()) {
    out.result = ctx.cached_result();
    out.error = ctx.cached_error();
    return out;
  }
  out.token = ctx.token();
  std::exception_ptr handler_error;
  try {
    out.result = complete_in_transaction(*processor_.checker(), ctx, [&](PostgresTransaction& tx) {
      try {
        return handler(tx, ctx);
      } catch (...) {
        handler_error = std::current_exception();
        throw;
      }
    });
  } catch (const ResultTooLargeError& e) {
    // Like the guard: keep the key retryable, a later attempt may fit.
    try {
      ctx.mark_failed(e.what(), FailureKind::kRetryable);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the original error is what the caller needs
    }
    throw;
  } catch (...) {
    if (handler_error) {
      // Rolled back already (the transaction unwound); record the verdict.
      try {
        ctx.mark_failed(describe(handler_error), processor_.classify(handler_error));
      } catch (...) {  // NOLINT(bugprone-empty-catch): the handler's error is what the caller needs
      }
    }
    // A lost lease or an unknown commit outcome: leave the record alone;
    // leaving `ctx` tries a retryable fail, which the fence refuses if a
    // newer owner (or our own commit) got there first.
    throw;
  }
  return out;
}

}  // namespace idem
