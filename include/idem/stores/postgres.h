/// @file idem/stores/postgres.h
/// @brief The PostgreSQL store and transactional mode (exactly-once effects).
///
/// PostgresStore keeps records in a PostgreSQL table (libpq). Every state
/// change is one SQL statement and one round trip; the asynchronous API is
/// native (one I/O thread, pipelined connections), and a batch claim is one
/// set-based statement.
///
/// @code
/// auto store = idem::PostgresStore::open("postgresql://idem:secret@db:5432/app?schema=idem&sslmode=verify-full");
/// @endcode
///
/// What no other store can do is *transactional mode*: the handler's own writes
/// and the COMPLETED record commit in one transaction, fenced by the claim's
/// token. A crash before the commit leaves nothing behind (the key is taken
/// over once its lease runs out); after the commit the key is a completed
/// duplicate; a stale owner's commit fails and writes nothing.
///
/// @code
/// idem::PostgresTransactionalProcessor processor(checker, {.scope = "ledger"});
/// auto outcome = processor.process(envelope, [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
///   tx.exec("INSERT INTO ledger (key, amount) VALUES ($1, $2)", {ctx.key(), amount}).value();
///   return std::string(R"({"booked":true})");
/// });
/// if (outcome.status == idem::ClaimStatus::kInProgress) nak(); else ack();
/// @endcode
///
/// The store connects once in create()/open() to create or check its schema,
/// so a wrong URL, password or missing grant is reported there. After that an
/// unreachable server shows up as kUnavailable / kTimeout on the calls, and the
/// store reconnects by itself. See docs/postgres.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/error.h"
#include "idem/core/processor.h"
#include "idem/core/store.h"

/// libpq's handles, for native_handle(); include <libpq-fe.h> to use them.
struct pg_conn;
struct pg_result;

namespace idem {

/// The circuit breaker of a PostgreSQL store: after `failure_threshold`
/// consecutive calls that got no answer from the server (refused, broken,
/// timed out) calls fail fast with kUnavailable for `open_duration`, then one
/// probe is let through. Its position is Store::circuit_state() (and the
/// circuit_breaker_state metric); same semantics as the Redis store's.
struct PostgresCircuitBreakerOptions {
  bool enabled = true;                             ///< false: always call the server
  std::uint32_t failure_threshold = 5;             ///< consecutive failures that open it (>= 1)
  std::chrono::milliseconds open_duration{1'000};  ///< how long it fails fast before a probe
};

/// The options of PostgresStore::create(); PostgresStore::parse_url() fills
/// them from a URL.
struct PostgresStoreOptions {
  /// libpq connection parameters. Empty means libpq's default (and its
  /// environment variables PGHOST, PGUSER, ...). `host` may be a comma list
  /// (with `port` a matching list) or a unix-socket directory.
  std::string host{};
  std::string port{};      ///< a number, or a comma list matching `host`
  std::string dbname{};    ///< the database
  std::string user{};      ///< the role
  std::string password{};  ///< never logged; shown as *** in URLs
  /// TLS: "disable", "prefer" (libpq's default), "require", "verify-ca",
  /// "verify-full"; sslrootcert is the CA file for the verify modes.
  std::string sslmode{};
  std::string sslrootcert{};              ///< PEM file of the CA(s) to trust
  std::string sslcert{};                  ///< client certificate (PEM), with sslkey
  std::string sslkey{};                   ///< client key (PEM)
  std::string application_name = "idem";  ///< shown in pg_stat_activity
  /// Any other libpq keyword (target_session_attrs, keepalives, options...).
  std::vector<std::pair<std::string, std::string>> libpq_params{};

  /// The schema holding idem's tables: lower-case letters, digits and '_',
  /// at most 48 characters. Several services may share a database with one
  /// schema each.
  std::string schema = "idem";
  /// Pipelined connections of the I/O thread that runs every store call.
  /// Concurrent calls share them, so a small number goes a long way.
  std::size_t pool_size = 2;
  /// Connections for transactional mode, each holding one open transaction
  /// while a handler runs. PostgresTransaction::begin() waits up to
  /// connect_timeout for one to free up.
  std::size_t max_transactions = 16;
  /// Bound on opening a connection.
  std::chrono::milliseconds connect_timeout{5'000};
  /// Bound on one store call (queueing, round trip and row-lock waits). A
  /// connection whose call times out is closed, never reused. list, stats and
  /// sweep get twelve times as long.
  std::chrono::milliseconds command_timeout{5'000};
  /// How often a background sweeper deletes expired records (batches of
  /// 1,000). 0: never; run sweep() (or `idem sweep`) yourself.
  std::chrono::milliseconds sweep_interval{0};
  /// Bound on each statement of transactional mode (PostgresTransaction):
  /// the transaction's statement_timeout (SET LOCAL at BEGIN; a statement
  /// past it fails with kTimeout and aborts the transaction), plus a client
  /// deadline a little later for a server that does not answer at all (the
  /// connection is then closed: kTimeout, rolled back). 0: no bound (the
  /// server's own statement_timeout applies). Per transaction:
  /// PostgresTransaction::set_statement_timeout().
  std::chrono::milliseconds transaction_statement_timeout{30'000};
  /// The circuit breaker (store calls and PostgresTransaction::begin()).
  PostgresCircuitBreakerOptions circuit_breaker{};
  /// Called after every breaker transition, on the thread whose call caused
  /// it (often the store's I/O thread): it must not block or call the store
  /// synchronously. The state may have changed again by the time it runs.
  std::function<void(CircuitState)> on_circuit_change{};
  /// Create or upgrade the schema on open. false: only check that it is
  /// there and current (for roles without CREATE; see docs/postgres.md).
  bool migrate = true;

  /// validate() reports the first inconsistent option as
  /// kInvalidConfiguration, naming it.
  Status validate() const;
};

/// PostgresRows is the result of PostgresTransaction::exec(): rows of text
/// values (PostgreSQL's text output format), and the affected-row count.
class PostgresRows {
 public:
  PostgresRows() = default;
  std::size_t rows() const noexcept;     ///< rows returned
  std::size_t columns() const noexcept;  ///< columns of each row
  /// value() is the text of one field, nullopt for SQL NULL (and out of range).
  std::optional<std::string_view> value(std::size_t row, std::size_t column) const;
  /// The name of a column ("" out of range).
  std::string_view column_name(std::size_t column) const;
  /// Rows inserted, updated or deleted (or returned by SELECT).
  std::uint64_t affected() const noexcept;

 private:
  friend class PostgresTransaction;
  std::shared_ptr<pg_result> result_;
};

/// PostgresTransaction is an open transaction (READ COMMITTED) on a pooled
/// connection of a PostgreSQL store: a thin handle for the handler's own SQL.
/// Move-only; destroying it without commit rolls back. Use it from one thread
/// at a time.
///
/// @code
/// auto tx = idem::PostgresTransaction::begin(checker->store()).value();
/// tx.exec("UPDATE accounts SET balance = balance - $1 WHERE id = $2", {"100", "42"}).value();
/// tx.commit_completed({.key = claim.key, .token = claim.outcome.token, .result = "{}"}).value();
/// @endcode
class PostgresTransaction {
 public:
  using Param = std::optional<std::string_view>;  ///< nullopt: SQL NULL

  /// begin() takes a connection of `store` (which must be a PostgreSQL store:
  /// kInvalidConfiguration otherwise) and starts a transaction.
  static Result<PostgresTransaction> begin(Store& store);

  PostgresTransaction(PostgresTransaction&&) noexcept;             ///< takes over the transaction
  PostgresTransaction& operator=(PostgresTransaction&&) noexcept;  ///< rolls back its own first
  PostgresTransaction(const PostgresTransaction&) = delete;
  PostgresTransaction& operator=(const PostgresTransaction&) = delete;
  ~PostgresTransaction();

  /// exec() runs one statement with parameters $1..$n passed as text. An
  /// error (kInvalidConfiguration for bad SQL, kInvalidArgument for a value or
  /// a violated constraint, kTimeout for a serialization failure, a deadlock
  /// or a statement past the transaction's statement timeout, kUnavailable
  /// for a lost connection) leaves the transaction aborted: only rollback is
  /// possible. A server that does not answer within the statement timeout
  /// plus a grace (max(1 s, a quarter of it)) is given up on: kTimeout, and
  /// the connection is closed (the server rolls the transaction back).
  Result<PostgresRows> exec(std::string_view sql, std::initializer_list<Param> params = {});
  /// exec() with the parameters in a span.
  Result<PostgresRows> exec(std::string_view sql, std::span<const Param> params);

  /// commit_completed() marks `completion.key` COMPLETED with its result
  /// inside this transaction, provided `completion.token` still owns the key,
  /// and commits. kLeaseLost: a newer owner took over; everything was rolled
  /// back. kUnavailable after the commit was sent: the outcome is unknown (a
  /// redelivery finds the key COMPLETED or takes it over).
  Status commit_completed(const CompleteRequest& completion);
  /// commit() commits without touching any record.
  Status commit();
  /// rollback() undoes everything; the handle is then closed.
  void rollback() noexcept;

  /// set_statement_timeout() bounds each later statement of this transaction
  /// (SET LOCAL statement_timeout; 0: no bound) instead of the store's
  /// transaction_statement_timeout, and moves the client deadline with it.
  Status set_statement_timeout(std::chrono::milliseconds timeout);

  /// True until commit, rollback or a failed commit_completed().
  bool open() const noexcept;
  /// SQLSTATE of the last failed exec() ("23505" ...), empty if none failed.
  const std::string& last_sqlstate() const noexcept;
  /// The libpq connection, for code that wants libpq directly. Do not close
  /// it, change its mode or end the transaction behind this handle's back.
  pg_conn* native_handle() const noexcept;

 private:
  struct Impl;
  explicit PostgresTransaction(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

/// complete_in_transaction() is transactional mode for the guard pattern:
/// with `ctx` acquired from an IdempotentEventProcessor on a PostgreSQL store,
/// it begins a transaction, runs `work` (your writes), marks the key COMPLETED
/// with the result `work` returns in the same transaction (fenced by
/// ctx.token()), commits, and finishes `ctx`. Returns the result.
///
/// Throws: whatever `work` throws (rolled back, `ctx` left to you: leaving the
/// scope marks it FAILED, retryable), LeaseLostError (a newer owner; nothing
/// committed), ResultTooLargeError (nothing committed), StoreUnavailableError.
std::string complete_in_transaction(const IdempotencyChecker& checker, ProcessingContext& ctx,
                                    const std::function<std::string(PostgresTransaction&)>& work);

/// What PostgresTransactionalProcessor::process() reports.
struct TransactionalOutcome {
  /// kAcquired: the handler ran now and its transaction committed.
  /// kCompleted: a duplicate; `result` is the cached result. kInProgress:
  /// another worker holds the key (redeliver later, do not acknowledge).
  /// kFailed: a terminal failure; `error` is the stored error.
  ClaimStatus status = ClaimStatus::kAcquired;
  std::string key{};                    ///< the store key
  Token token = 0;                      ///< the fencing token, when acquired
  std::optional<std::string> result{};  ///< the handler's result, or the cached one
  std::optional<std::string> error{};   ///< the stored error of a terminal failure
  /// True when the handler ran now (and committed).
  bool executed() const noexcept { return status == ClaimStatus::kAcquired; }
};

/// The handler of transactional mode: write through `tx`, return the result
/// to store. `ctx` gives the key, the fencing token, the attempt and the last
/// checkpoint of a previous owner.
using TransactionalHandler = std::function<std::string(PostgresTransaction& tx, ProcessingContext& ctx)>;

/// PostgresTransactionalProcessor is the guard with transactional
/// completion: IdempotentEventProcessor semantics (scope, key extractor,
/// waiting for an in-flight original, heartbeat, failure classifier,
/// observers), with the handler's writes and the COMPLETED record committed
/// together.
class PostgresTransactionalProcessor {
 public:
  /// `checker` must be on a PostgreSQL store (ConfigurationError otherwise).
  explicit PostgresTransactionalProcessor(std::shared_ptr<IdempotencyChecker> checker, ProcessorOptions options = {});

  /// process() runs `handler` once per key. Throws InvalidEnvelopeError,
  /// KeyMismatchError, StoreUnavailableError, LeaseLostError (nothing
  /// committed), and the handler's own exception after rolling back and
  /// marking the record FAILED (retryable or terminal, by the classifier).
  TransactionalOutcome process(const Envelope& envelope, const TransactionalHandler& handler);

  /// The guard underneath, for options and the failure classifier.
  IdempotentEventProcessor& processor() noexcept { return processor_; }

 private:
  IdempotentEventProcessor processor_;
};

/// PostgresClientStats are counters of one store instance, for tests and
/// benchmarks.
struct PostgresClientStats {
  std::uint64_t calls = 0;                       ///< store calls answered (or failed) by the I/O thread
  std::uint64_t round_trips = 0;                 ///< pipeline syncs answered: one per call, a whole batch included
  std::uint64_t connects = 0;                    ///< connections established by the I/O thread
  std::uint64_t broken = 0;                      ///< connections closed after an error or a timeout
  std::uint64_t rejected = 0;                    ///< calls failed fast by the open circuit breaker
  CircuitState circuit = CircuitState::kClosed;  ///< the breaker's position
};

/// PostgresStore makes PostgreSQL stores (they are used through the Store
/// interface) and parses and redacts their URLs.
class PostgresStore {
 public:
  /// create() validates the options (kInvalidConfiguration), connects once
  /// (kUnavailable when it cannot) and creates or checks the schema (with
  /// migrate = false a missing schema is kNotFound).
  static Result<std::shared_ptr<Store>> create(PostgresStoreOptions options);

  /// open() accepts libpq's URI form:
  ///   postgresql://[user[:password]@][host[:port][,host[:port]...]][/dbname][?query]
  /// (postgres:// too). Query keys of the store: schema, pool_size,
  /// max_transactions, connect_timeout_ms, command_timeout_ms,
  /// sweep_interval_ms, tx_statement_timeout_ms, breaker_threshold (0:
  /// no breaker), breaker_open_ms, migrate=0|1; any other key must be a libpq
  /// connection keyword (sslmode, sslrootcert, sslcert, sslkey,
  /// application_name, target_session_attrs, ...). Values are
  /// percent-decoded.
  static Result<std::shared_ptr<Store>> open(std::string_view url);
  /// With create_if_missing = false (inspection tools) the schema is never
  /// created or upgraded, as with migrate=0: a missing schema is kNotFound.
  static Result<std::shared_ptr<Store>> open(std::string_view url, const OpenOptions& open_options);

  /// parse_url() is open() without connecting.
  static Result<PostgresStoreOptions> parse_url(std::string_view url);

  /// redact_url() returns `url` with its password (user info, and the
  /// password / sslpassword query keys) replaced by ***, for logs.
  static std::string redact_url(std::string_view url);

  /// True when `store` is a PostgreSQL store made by create()/open().
  static bool is_postgres(const Store& store) noexcept;

  /// client_stats() returns the counters of a store made by create()/open(),
  /// or nullopt for any other store.
  static std::optional<PostgresClientStats> client_stats(const Store& store);
};

}  // namespace idem
