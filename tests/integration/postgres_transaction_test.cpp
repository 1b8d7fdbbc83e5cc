// Transactional mode against a real PostgreSQL 15 (one server for the
// binary): the handler's business row and the COMPLETED record commit
// together or not at all; a stale owner's commit writes nothing; a process
// killed before its commit leaves nothing; the guard and the manual API; and
// the server restarted (fast, then crashed) in the middle of a run: typed
// errors, then recovery, nothing acknowledged is lost and nothing runs twice.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/stores/memory.h"
#include "idem/stores/postgres.h"
#include "integration/postgres_worker.h"
#include "support/postgres_server.h"

namespace {

using namespace std::chrono_literals;
using idem::test::PostgresServer;

auto* const g_env = static_cast<idem::test::PostgresEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new idem::test::PostgresEnvironment(idem::test::PostgresServerOptions{})));

// The binary's server (one per binary: initdb takes a second).
PostgresServer& server() { return g_env->server(); }

int g_schemas = 0;

// A fresh schema with the store's tables and a business table `ledger`
// without any unique constraint: only Idem keeps a key from landing twice.
struct Fixture {
  std::string schema;
  std::string url;
  std::shared_ptr<idem::Store> store;
  std::shared_ptr<idem::IdempotencyChecker> checker;

  explicit Fixture(idem::CheckerOptions options = {}, const std::string& query = "") {
    schema = "tx" + std::to_string(::getpid()) + "_" + std::to_string(++g_schemas);
    url = server().url("schema=" + schema + (query.empty() ? "" : "&" + query));
    auto s = idem::PostgresStore::open(url);
    if (!s) throw std::runtime_error(s.error().to_string());
    store = *s;
    checker = std::make_shared<idem::IdempotencyChecker>(store, std::move(options));
    std::string err;
    if (!server().exec("CREATE TABLE " + schema + ".ledger (id bigserial PRIMARY KEY, key text NOT NULL, " +
                           "token bigint NOT NULL, amount bigint NOT NULL)",
                       &err)) {
      throw std::runtime_error(err);
    }
  }

  std::string insert_sql() const {
    return "INSERT INTO " + schema + ".ledger (key, token, amount) VALUES ($1, $2, $3)";
  }
  int rows(const std::string& key) const {
    return std::stoi(server().exec("SELECT count(*) FROM " + schema + ".ledger WHERE key = '" + key + "'").value());
  }
  int all_rows() const { return std::stoi(server().exec("SELECT count(*) FROM " + schema + ".ledger").value()); }
};

idem::Envelope event(const std::string& id, std::int64_t amount = 100) {
  idem::Envelope e;
  e.event_id = id;
  e.event_type = "payment.booked";
  e.payload = R"({"amount":)" + std::to_string(amount) + "}";
  return e;
}

std::string book(idem::PostgresTransaction& tx, idem::ProcessingContext& ctx, const Fixture& f,
                 std::int64_t amount = 100) {
  tx.exec(f.insert_sql(), {ctx.key(), std::to_string(ctx.token()), std::to_string(amount)}).value();
  return R"({"booked":)" + std::to_string(amount) + "}";
}

TEST(PostgresTransaction, BusinessRowAndCompletionCommitTogether) {
  Fixture f;
  idem::PostgresTransactionalProcessor processor(f.checker, {.scope = "ledger"});
  int runs = 0;
  auto handler = [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
    ++runs;
    return book(tx, ctx, f);
  };
  idem::TransactionalOutcome first = processor.process(event("e1"), handler);
  EXPECT_TRUE(first.executed());
  EXPECT_EQ(first.result, R"({"booked":100})");
  EXPECT_EQ(f.rows(first.key), 1);
  auto rec = f.store->get(first.key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, R"({"booked":100})");
  EXPECT_EQ(server().exec("SELECT completed_in_tx FROM " + f.schema + ".records"), std::optional<std::string>("t"));

  for (int i = 0; i < 3; ++i) {
    idem::TransactionalOutcome dup = processor.process(event("e1"), handler);
    EXPECT_EQ(dup.status, idem::ClaimStatus::kCompleted);
    EXPECT_EQ(dup.result, R"({"booked":100})");
  }
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(f.rows(first.key), 1);
}

TEST(PostgresTransaction, HandlerErrorRollsBackAndFollowsTheFailurePolicy) {
  Fixture f;
  idem::PostgresTransactionalProcessor processor(f.checker);
  // Retryable: the row is rolled back, the record FAILED, the next delivery runs.
  EXPECT_THROW(processor.process(event("r1"),
                                 [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) -> std::string {
                                   book(tx, ctx, f);
                                   throw std::runtime_error("bank timeout");
                                 }),
               std::runtime_error);
  const std::string key = f.checker->key_for(event("r1")).value();
  EXPECT_EQ(f.rows(key), 0);
  auto rec = f.store->get(key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kFailed);
  EXPECT_TRUE(rec->retryable);
  EXPECT_EQ(rec->error, "bank timeout");
  auto again = processor.process(event("r1"), [&](auto& tx, auto& ctx) { return book(tx, ctx, f); });
  EXPECT_TRUE(again.executed());
  EXPECT_EQ(f.rows(key), 1);

  // Terminal: stored and replayed, never run again.
  EXPECT_THROW(processor.process(event("t1"),
                                 [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) -> std::string {
                                   book(tx, ctx, f);
                                   throw idem::TerminalError("card declined");
                                 }),
               idem::TerminalError);
  auto replay = processor.process(event("t1"), [&](auto&, auto&) -> std::string {
    ADD_FAILURE() << "a terminal failure must not run again";
    return "";
  });
  EXPECT_EQ(replay.status, idem::ClaimStatus::kFailed);
  EXPECT_EQ(replay.error, "card declined");
  EXPECT_EQ(f.all_rows(), 1);

  // A failed statement inside the handler: nothing is committed either.
  EXPECT_THROW(processor.process(event("s1"),
                                 [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
                                   book(tx, ctx, f);
                                   tx.exec("INSERT INTO no_such_table VALUES (1)").value();
                                   return std::string("{}");
                                 }),
               idem::ConfigurationError);  // the program is wrong, not the message
  EXPECT_EQ(f.all_rows(), 1);
}

TEST(PostgresTransaction, StaleOwnerCommitsNothing) {
  // Heartbeat off and a short lease, so that the first owner loses the key
  // while its handler still runs.
  Fixture f({.lease = 300ms});
  idem::PostgresTransactionalProcessor a(f.checker, {.heartbeat = false});
  idem::PostgresTransactionalProcessor b(f.checker, {.heartbeat = false});
  std::mutex m;
  std::condition_variable cv;
  bool a_wrote = false;
  bool b_done = false;
  std::atomic<idem::Token> a_token{0};
  std::exception_ptr a_error;
  std::thread stale([&] {
    try {
      a.process(event("s"), [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
        a_token = ctx.token();
        std::string r = book(tx, ctx, f, 111);
        std::unique_lock lock(m);
        a_wrote = true;
        cv.notify_all();
        cv.wait(lock, [&] { return b_done; });  // paused past its lease (a GC pause, a slow call...)
        return r;
      });
    } catch (...) {
      a_error = std::current_exception();
    }
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return a_wrote; });
  }
  std::this_thread::sleep_for(500ms);  // a's lease has run out
  idem::TransactionalOutcome taken = b.process(event("s"), [&](auto& tx, auto& ctx) {
    EXPECT_GT(ctx.token(), a_token.load());
    EXPECT_TRUE(ctx.is_takeover());
    return book(tx, ctx, f, 222);
  });
  EXPECT_TRUE(taken.executed());
  {
    std::lock_guard lock(m);
    b_done = true;
  }
  cv.notify_all();
  stale.join();
  ASSERT_TRUE(a_error);
  EXPECT_THROW(std::rethrow_exception(a_error), idem::LeaseLostError);
  EXPECT_EQ(f.rows(taken.key), 1) << "the stale owner's row must have been rolled back";
  EXPECT_EQ(server().exec("SELECT amount FROM " + f.schema + ".ledger"), std::optional<std::string>("222"));
  auto rec = f.store->get(taken.key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, R"({"booked":222})");
  EXPECT_EQ(rec->token, taken.token);

  // Fenced while the new owner is still working, too: it has claimed (a
  // takeover) but not committed when the stale owner tries to commit.
  {
    std::unique_lock lock(m);
    a_wrote = false;
    b_done = false;
  }
  a_error = nullptr;
  std::thread stale2([&] {
    try {
      a.process(event("s2"), [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
        std::string r = book(tx, ctx, f, 333);
        std::unique_lock lock(m);
        a_wrote = true;
        cv.notify_all();
        cv.wait(lock, [&] { return b_done; });
        return r;
      });
    } catch (...) {
      a_error = std::current_exception();
    }
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return a_wrote; });
  }
  std::this_thread::sleep_for(500ms);
  auto takeover = f.checker->claim(event("s2")).value();
  ASSERT_TRUE(takeover.outcome.acquired());
  EXPECT_EQ(takeover.outcome.acquire_kind, idem::AcquireKind::kTakeover);
  {
    std::lock_guard lock(m);
    b_done = true;
  }
  cv.notify_all();
  stale2.join();
  ASSERT_TRUE(a_error);
  EXPECT_THROW(std::rethrow_exception(a_error), idem::LeaseLostError);
  EXPECT_EQ(f.rows(takeover.key), 0) << "the stale owner committed while the new owner was working";
  auto mid = f.store->get(takeover.key).value();
  ASSERT_TRUE(mid.has_value());
  EXPECT_EQ(mid->status, idem::ProcessingStatus::kProcessing);
  EXPECT_EQ(mid->token, takeover.outcome.token);

  // The manual API says the same: a stale token commits nothing.
  auto claim = f.checker->claim(event("m")).value();
  ASSERT_TRUE(claim.outcome.acquired());
  auto tx = idem::PostgresTransaction::begin(*f.store).value();
  tx.exec(f.insert_sql(), {claim.key, "0", "5"}).value();
  idem::Status s = tx.commit_completed({.key = claim.key, .token = claim.outcome.token + 1000, .result = "x"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), idem::ErrorCode::kLeaseLost);
  EXPECT_FALSE(tx.open());
  EXPECT_EQ(f.rows(claim.key), 0);
  EXPECT_EQ(f.store->get(claim.key).value()->status, idem::ProcessingStatus::kProcessing);
}

TEST(PostgresTransaction, ProcessKilledBeforeCommitLeavesNothing) {
  // A worker process of its own (postgres_exactly_once_worker, scope
  // "ledger", lease 300 ms) claims, writes its business row in the
  // handler's transaction, and is SIGKILLed before the commit.
  ::signal(SIGPIPE, SIG_IGN);
  Fixture f({.lease = 300ms});
  std::string err;
  ASSERT_TRUE(server().exec("CREATE TABLE " + f.schema +
                                ".worker_ledger (id bigserial PRIMARY KEY, key text NOT NULL, worker int NOT NULL, "
                                "token bigint NOT NULL)",
                            &err))
      << err;
  idem::test::WorkerProcess worker(f.url, f.schema + ".worker_ledger", 1);
  ASSERT_TRUE(worker.wait_for("READY"));
  ASSERT_TRUE(worker.send("D k"));
  ASSERT_TRUE(worker.wait_for("P 1 k"));  // in the handler, before the business write
  ASSERT_TRUE(worker.send("C"));
  ASSERT_TRUE(worker.wait_for("P 2 k"));  // the row is written, the transaction not committed
  worker.kill_now();

  idem::CheckerOptions options{.lease = 300ms};
  options.key.scope = "ledger";
  auto checker = std::make_shared<idem::IdempotencyChecker>(f.store, options);
  idem::Envelope redelivered;  // the worker's own envelope for "k"
  redelivered.event_id = "k";
  redelivered.event_type = "ledger.entry";
  redelivered.payload = R"({"entry":"k"})";
  const std::string key = checker->key_for(redelivered).value();
  EXPECT_EQ(server().exec("SELECT count(*) FROM " + f.schema + ".worker_ledger"), std::optional<std::string>("0"))
      << "an uncommitted business row survived the crash";
  auto rec = f.store->get(key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kProcessing);
  // Redelivered after the lease: taken over and done once.
  std::this_thread::sleep_for(500ms);
  idem::PostgresTransactionalProcessor processor(checker);
  auto out = processor.process(redelivered, [&](auto& tx, auto& ctx) { return book(tx, ctx, f); });
  EXPECT_TRUE(out.executed());
  EXPECT_TRUE(out.executed() && out.key == key);
  EXPECT_EQ(f.rows(key), 1);
}

// Counts store calls that failed, to show the guard's bookkeeping is clean.
class ErrorCounter final : public idem::Observer {
 public:
  void on_store_call(std::string_view, idem::StoreOp, std::chrono::nanoseconds, const idem::Error* e) override {
    if (e != nullptr) errors.fetch_add(1);
  }
  void on_handler(std::string_view, idem::HandlerOutcome outcome, std::chrono::nanoseconds) override {
    if (outcome == idem::HandlerOutcome::kCompleted) completed.fetch_add(1);
  }
  std::atomic<int> errors{0};
  std::atomic<int> completed{0};
};

TEST(PostgresTransaction, GuardPatternWithCompleteInTransaction) {
  auto observer = std::make_shared<ErrorCounter>();
  Fixture f({.observer = observer});
  idem::IdempotentEventProcessor processor(f.checker, {.scope = "guard"});
  {
    auto ctx = processor.process(event("g1"));
    ASSERT_TRUE(ctx.should_process());
    const auto before = *idem::PostgresStore::client_stats(*f.store);
    std::string result =
        idem::complete_in_transaction(*f.checker, ctx, [&](idem::PostgresTransaction& tx) { return book(tx, ctx, f); });
    const auto after = *idem::PostgresStore::client_stats(*f.store);
    EXPECT_EQ(result, R"({"booked":100})");
    EXPECT_TRUE(ctx.finished());
    // The guard's own completion is one confirmation round trip, not a
    // failed write followed by a read.
    EXPECT_LE(after.round_trips - before.round_trips, 1u);
  }
  EXPECT_EQ(observer->errors.load(), 0) << "transactional completion must not show up as store errors";
  EXPECT_EQ(observer->completed.load(), 1);
  auto dup = processor.process(event("g1"));
  EXPECT_TRUE(dup.is_duplicate());
  EXPECT_EQ(dup.cached_result(), R"({"booked":100})");
  EXPECT_EQ(f.rows(dup.key()), 1);

  // Work that throws leaves the guard to do what guards do: FAILED, retryable.
  {
    auto ctx = processor.process(event("g2"));
    EXPECT_THROW(idem::complete_in_transaction(*f.checker, ctx,
                                               [&](idem::PostgresTransaction& tx) -> std::string {
                                                 book(tx, ctx, f);
                                                 throw std::runtime_error("boom");
                                               }),
                 std::runtime_error);
  }
  const std::string k2 = f.checker->key_for(event("g2"), {.scope = "guard"}).value();
  EXPECT_EQ(f.store->get(k2).value()->status, idem::ProcessingStatus::kFailed);
  EXPECT_EQ(f.rows(k2), 0);

  // A duplicate cannot complete anything.
  auto dup2 = processor.process(event("g1"));
  EXPECT_THROW(idem::complete_in_transaction(*f.checker, dup2, [](auto&) { return std::string(); }), idem::IdemError);
}

TEST(PostgresTransaction, ManualApiAndStatementErrors) {
  Fixture f;
  auto claim = f.checker->claim(event("man")).value();
  ASSERT_TRUE(claim.outcome.acquired());
  auto tx = idem::PostgresTransaction::begin(*f.store).value();
  EXPECT_TRUE(tx.open());
  EXPECT_NE(tx.native_handle(), nullptr);
  auto rows = tx.exec("SELECT $1::int + 1 AS n, NULL::text AS nothing", {"41"}).value();
  EXPECT_EQ(rows.rows(), 1u);
  EXPECT_EQ(rows.column_name(0), "n");
  EXPECT_EQ(rows.value(0, 0), std::optional<std::string_view>("42"));
  EXPECT_EQ(rows.value(0, 1), std::nullopt);
  auto inserted = tx.exec(f.insert_sql(), {claim.key, std::to_string(claim.outcome.token), "7"}).value();
  EXPECT_EQ(inserted.affected(), 1u);
  auto bad = tx.exec("SELEC 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), idem::ErrorCode::kInvalidConfiguration);
  EXPECT_EQ(tx.last_sqlstate(), "42601");
  idem::Status s = tx.commit_completed({.key = claim.key, .token = claim.outcome.token, .result = "r"});
  ASSERT_FALSE(s.ok()) << "a transaction with a failed statement must not commit";
  EXPECT_EQ(f.rows(claim.key), 0);
  EXPECT_EQ(f.store->get(claim.key).value()->status, idem::ProcessingStatus::kProcessing);
  EXPECT_EQ(tx.exec("SELECT 1").error().code(), idem::ErrorCode::kInvalidConfiguration) << "closed";

  // A clean one commits both.
  auto tx2 = idem::PostgresTransaction::begin(*f.store).value();
  tx2.exec(f.insert_sql(), {claim.key, std::to_string(claim.outcome.token), "8"}).value();
  ASSERT_TRUE(tx2.commit_completed({.key = claim.key, .token = claim.outcome.token, .result = "r2"}).ok());
  EXPECT_EQ(f.rows(claim.key), 1);
  EXPECT_EQ(f.store->get(claim.key).value()->result, "r2");
  // The owner's own confirmation is accepted; anyone else's is not.
  EXPECT_TRUE(f.store->complete({.key = claim.key, .token = claim.outcome.token, .result = "ignored"}).ok());
  EXPECT_EQ(f.store->get(claim.key).value()->result, "r2");
  EXPECT_EQ(f.store->complete({.key = claim.key, .token = claim.outcome.token + 1, .result = "x"}).error().code(),
            idem::ErrorCode::kLeaseLost);
  EXPECT_EQ(f.store->fail({.key = claim.key, .token = claim.outcome.token, .error = "x"}).error().code(),
            idem::ErrorCode::kLeaseLost);

  // Only a PostgreSQL store has transactions.
  auto memory = idem::MemoryStore::create();
  auto none = idem::PostgresTransaction::begin(*memory);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), idem::ErrorCode::kInvalidConfiguration);
  EXPECT_THROW(idem::PostgresTransactionalProcessor(std::make_shared<idem::IdempotencyChecker>(memory)),
               idem::IdemError);
}

// Each statement of a transaction is bounded by the store's
// transaction_statement_timeout (statement_timeout, set at BEGIN), and per
// transaction by set_statement_timeout(). A statement past it fails with
// kTimeout and nothing of the transaction commits.
TEST(PostgresTransaction, StatementTimeoutBoundsEachStatement) {
  Fixture f({}, "tx_statement_timeout_ms=300");
  auto claim = f.checker->claim(event("slow")).value();
  ASSERT_TRUE(claim.outcome.acquired());
  auto tx = idem::PostgresTransaction::begin(*f.store).value();
  tx.exec(f.insert_sql(), {claim.key, std::to_string(claim.outcome.token), "1"}).value();
  const auto start = std::chrono::steady_clock::now();
  auto slow = tx.exec("SELECT pg_sleep(5)");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.error().code(), idem::ErrorCode::kTimeout) << slow.error().to_string();
  EXPECT_EQ(tx.last_sqlstate(), "57014");
  EXPECT_LT(took, 3s) << "the statement ran past its timeout";
  EXPECT_FALSE(tx.commit_completed({.key = claim.key, .token = claim.outcome.token, .result = "r"}).ok());
  EXPECT_EQ(f.rows(claim.key), 0);
  EXPECT_EQ(f.store->get(claim.key).value()->status, idem::ProcessingStatus::kProcessing);

  // Per transaction: no bound, then a tighter one.
  auto tx2 = idem::PostgresTransaction::begin(*f.store).value();
  ASSERT_TRUE(tx2.set_statement_timeout(0ms).ok());
  EXPECT_TRUE(tx2.exec("SELECT pg_sleep(0.5)").ok()) << "0 means no bound";
  ASSERT_TRUE(tx2.set_statement_timeout(100ms).ok());
  auto tight = tx2.exec("SELECT pg_sleep(1)");
  ASSERT_FALSE(tight.ok());
  EXPECT_EQ(tight.error().code(), idem::ErrorCode::kTimeout);
  EXPECT_EQ(tx2.set_statement_timeout(-1ms).error().code(), idem::ErrorCode::kInvalidArgument);
  EXPECT_EQ(tx2.set_statement_timeout(50ms).error().code(), idem::ErrorCode::kInvalidConfiguration)
      << "the transaction is aborted; only rollback is left";
  tx2.rollback();

  // The bound is the store's option (and its URL key).
  EXPECT_EQ(
      idem::PostgresStore::parse_url(server().url("tx_statement_timeout_ms=250")).value().transaction_statement_timeout,
      250ms);
  EXPECT_EQ(idem::PostgresStore::parse_url(server().url("")).value().transaction_statement_timeout, 30s);
}

// A server that stops answering altogether (its backend frozen, so its own
// statement_timeout cannot fire either): exec() gives up after the timeout
// plus a grace, closes the connection and says kTimeout.
TEST(PostgresTransaction, StatementTimeoutHoldsWhenTheServerStopsAnswering) {
  Fixture f({}, "tx_statement_timeout_ms=300");
  auto tx = idem::PostgresTransaction::begin(*f.store).value();
  const int backend = PQbackendPID(tx.native_handle());
  ASSERT_GT(backend, 0);
  ASSERT_EQ(::kill(backend, SIGSTOP), 0);
  struct Resume {
    int pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{backend};
  const auto start = std::chrono::steady_clock::now();
  auto r = tx.exec("SELECT 1");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), idem::ErrorCode::kTimeout) << r.error().to_string();
  EXPECT_GE(took, 1200ms) << "300 ms + the 1 s grace";
  EXPECT_LT(took, 5s);
  EXPECT_FALSE(tx.open()) << "a connection in an unknown state is closed";
  // The store is fine, and so is the next transaction.
  EXPECT_TRUE(f.store->ping().ok());
  auto tx2 = idem::PostgresTransaction::begin(*f.store).value();
  EXPECT_TRUE(tx2.exec("SELECT 1").ok());
}

// Before the restart test: stops and restarts the shared server. While it is
// down the breaker opens after breaker_threshold calls without an answer,
// and calls (transactions included) fail fast; the checker's observer
// reports every position; after the server is back one probe closes it.
TEST(PostgresTransaction, ZYCircuitBreakerOpensWhileTheServerIsDown) {
  auto metrics = std::make_shared<idem::MetricsRegistry>();
  Fixture f({.observer = metrics},
            "breaker_threshold=3&breaker_open_ms=500&command_timeout_ms=1000&connect_timeout_ms=1000");
  ASSERT_TRUE(f.store->ping().ok());
  EXPECT_EQ(f.store->circuit_state(), idem::CircuitState::kClosed);
  server().stop();
  struct Restart {
    ~Restart() {
      std::string err;
      if (!server().process().running()) {
        EXPECT_TRUE(server().restart(&err)) << err;
      }
    }
  } restart_on_exit;
  int failures = 0;
  for (; failures < 10 && f.store->circuit_state() != idem::CircuitState::kOpen; ++failures) {
    auto r = f.checker->claim(event("cb" + std::to_string(failures)));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), idem::ErrorCode::kUnavailable) << r.error().to_string();
  }
  EXPECT_EQ(failures, 3) << "the circuit opens after breaker_threshold calls without an answer";
  ASSERT_EQ(f.store->circuit_state(), idem::CircuitState::kOpen);
  EXPECT_NE(metrics->render().find("idem_circuit_breaker_state{store=\"postgresql\"} 2"), std::string::npos)
      << metrics->render();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    auto r = f.store->get("cb0");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), idem::ErrorCode::kUnavailable);
    EXPECT_NE(r.error().message().find("circuit breaker open"), std::string::npos) << r.error().message();
  }
  auto tx = idem::PostgresTransaction::begin(*f.store);
  ASSERT_FALSE(tx.ok());
  EXPECT_NE(tx.error().message().find("circuit breaker open"), std::string::npos) << tx.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms) << "an open circuit must fail fast";
  EXPECT_GE(idem::PostgresStore::client_stats(*f.store)->rejected, 21u);

  std::string err;
  ASSERT_TRUE(server().restart(&err)) << err;
  std::this_thread::sleep_for(600ms);  // past open_duration: the next call is the probe
  auto probe = f.checker->claim(event("cb-after"));
  ASSERT_TRUE(probe.ok()) << probe.error().to_string();
  EXPECT_TRUE(probe->outcome.acquired());
  EXPECT_EQ(f.store->circuit_state(), idem::CircuitState::kClosed);
  EXPECT_EQ(idem::PostgresStore::client_stats(*f.store)->circuit, idem::CircuitState::kClosed);
  EXPECT_NE(metrics->render().find("idem_circuit_breaker_state{store=\"postgresql\"} 0"), std::string::npos);
  EXPECT_TRUE(idem::PostgresTransaction::begin(*f.store).ok());

  // breaker_threshold=0 turns it off.
  EXPECT_FALSE(idem::PostgresStore::parse_url(server().url("breaker_threshold=0")).value().circuit_breaker.enabled);
}

// Last: restarts the shared server. Workers run claims, completions and
// transactional handlers while PostgreSQL goes down twice (a fast shutdown,
// then a crash of the whole server). Every call either succeeds or fails
// with kUnavailable / kTimeout; the workers retry until every key is done;
// then every key is COMPLETED and every business row exists exactly once.
TEST(PostgresTransaction, ZZServerRestartMidRun) {
  Fixture f({.lease = 2s}, "command_timeout_ms=2000&connect_timeout_ms=2000");
  idem::PostgresTransactionalProcessor processor(f.checker);
  // Paced so that the run spans both outages (about 2.5 s of work).
  constexpr int kKeys = 800;
  constexpr int kWorkers = 4;
  constexpr auto kPace = 12ms;
  std::mutex m;
  std::map<idem::ErrorCode, int> errors;
  std::map<std::string, std::string> acknowledged;  // key -> result the caller was told
  std::atomic<int> next{0};
  std::atomic<bool> stop{false};
  auto note_error = [&](idem::ErrorCode code) {
    std::lock_guard lock(m);
    ++errors[code];
  };
  auto worker = [&](int w) {
    while (!stop.load()) {
      const int i = next.fetch_add(1);
      if (i >= kKeys) return;
      const std::string id = "k" + std::to_string(i);
      for (int attempt = 0; attempt < 400; ++attempt) {
        try {
          idem::TransactionalOutcome out;
          if (w % 2 == 0) {
            out = processor.process(event(id), [&](auto& tx, auto& ctx) { return book(tx, ctx, f); });
          } else {
            // The plain API alongside: claim and complete.
            auto claim = f.checker->claim(event(id));
            if (!claim) throw idem::StoreUnavailableError(claim.error());
            out.key = claim->key;
            out.status = claim->outcome.status;
            if (claim->outcome.acquired()) {
              auto tx = idem::PostgresTransaction::begin(*f.store);
              if (!tx) throw idem::StoreUnavailableError(tx.error());
              auto row = tx->exec(f.insert_sql(), {claim->key, std::to_string(claim->outcome.token), "100"});
              if (!row) throw idem::StoreUnavailableError(row.error());
              idem::Status s = tx->commit_completed(
                  {.key = claim->key, .token = claim->outcome.token, .result = R"({"booked":100})"});
              if (!s) throw idem::StoreUnavailableError(s.error());
              out.result = R"({"booked":100})";
            } else if (claim->outcome.status == idem::ClaimStatus::kCompleted) {
              out.result = claim->outcome.record->result;
            }
          }
          if (out.status == idem::ClaimStatus::kAcquired || out.status == idem::ClaimStatus::kCompleted) {
            {
              std::lock_guard lock(m);
              acknowledged[out.key] = out.result.value_or("");
            }
            std::this_thread::sleep_for(kPace);
            break;
          }
          std::this_thread::sleep_for(50ms);  // in progress elsewhere (or a dead owner's lease): redeliver later
        } catch (const idem::IdemError& e) {
          note_error(e.code());
          std::this_thread::sleep_for(20ms);
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) threads.emplace_back(worker, w);
  std::this_thread::sleep_for(200ms);
  std::string err;
  server().stop();  // fast shutdown: sessions are terminated
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(server().restart(&err)) << err;
  std::this_thread::sleep_for(300ms);
  server().kill();  // a crash: the whole server dies at once
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(server().restart(&err)) << err;
  const auto restarted = std::chrono::steady_clock::now();
  for (auto& t : threads) t.join();
  std::cout
      << "[ INFO     ] workers finished "
      << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - restarted).count()
      << " ms after the second restart\n";

  std::lock_guard lock(m);
  EXPECT_EQ(acknowledged.size(), static_cast<std::size_t>(kKeys)) << "every key must get done";
  int typed = 0;
  for (const auto& [code, n] : errors) {
    // kLeaseLost: an owner whose lease ran out during an outage and was taken over.
    EXPECT_TRUE(code == idem::ErrorCode::kUnavailable || code == idem::ErrorCode::kTimeout ||
                code == idem::ErrorCode::kLeaseLost)
        << n << " errors with code " << idem::to_string(code);
    typed += n;
  }
  EXPECT_GT(typed, 0) << "the restarts went unnoticed: the test did not test anything";
  std::cout << "[ INFO     ] typed errors during the restarts:";
  for (const auto& [code, n] : errors) std::cout << " " << idem::to_string(code) << "=" << n;
  std::cout << "\n";
  EXPECT_TRUE(f.store->ping().ok());
  // Business rows per key, in one query (a connection per key would be slow).
  std::map<std::string, int> rows;
  std::istringstream lines(
      server().exec("SELECT key, count(*) FROM " + f.schema + ".ledger GROUP BY key").value_or(""));
  for (std::string line; std::getline(lines, line);) {
    rows[line.substr(0, line.find('|'))] = std::stoi(line.substr(line.find('|') + 1));
  }
  for (const auto& [key, result] : acknowledged) {
    auto rec = f.store->get(key);
    ASSERT_TRUE(rec.ok()) << rec.error().to_string();
    ASSERT_TRUE(rec->has_value()) << key << " was acknowledged and is lost";
    EXPECT_EQ((*rec)->status, idem::ProcessingStatus::kCompleted) << key;
    EXPECT_EQ((*rec)->result, result) << key;
    EXPECT_EQ(rows[key], 1) << key << " business row count";
  }
  EXPECT_EQ(f.all_rows(), kKeys);
}

}  // namespace
