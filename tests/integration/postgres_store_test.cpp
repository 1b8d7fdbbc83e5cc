// Integration tests of PostgresStore against a real PostgreSQL 15 that the
// binary starts once (TLS on, so one server serves both plain and TLS
// connections): the whole contract suite (a fresh schema per test), round
// trips per call and per batch, the native asynchronous API, waits woken by
// NOTIFY, URLs and redaction, migrations and the grants a role needs.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "conformance/store_contract.h"
#include "idem/core/checker.h"
#include "idem/stores/postgres.h"
#include "support/postgres_server.h"

namespace {

using namespace std::chrono_literals;
using idem::test::PostgresServer;

auto* const g_env = static_cast<idem::test::PostgresEnvironment*>(::testing::AddGlobalTestEnvironment(
    new idem::test::PostgresEnvironment(idem::test::PostgresServerOptions{.tls = true, .settings = {}})));

// The binary's server (one per binary: initdb takes a second).
PostgresServer& server() { return g_env->server(); }

std::atomic<int> g_schema_counter{0};

std::string fresh_schema() { return "t" + std::to_string(::getpid()) + "_" + std::to_string(++g_schema_counter); }

std::shared_ptr<idem::Store> open_store(const std::string& query = "") {
  const std::string q = "schema=" + fresh_schema() + (query.empty() ? "" : "&" + query);
  auto store = idem::PostgresStore::open(server().url(q));
  EXPECT_TRUE(store.ok()) << store.error().to_string();
  return store.ok() ? *store : nullptr;
}

StoreFixture postgres_fixture() {
  return StoreFixture{"Postgres", [] { return open_store(); }};
}

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = "evt";
  r.event_type = "order.created";
  return r;
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(Postgres, postgres_fixture());

namespace {

TEST(PostgresStore, OneRoundTripPerCallAndPerBatch) {
  auto store = open_store("pool_size=1");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->ping().ok());  // connect and prepare first
  auto stats = [&] { return *idem::PostgresStore::client_stats(*store); };
  const auto s0 = stats();
  idem::ClaimOutcome out = store->claim(claim_req("rt:a")).value();
  ASSERT_TRUE(out.acquired());
  ASSERT_TRUE(store->complete({.key = "rt:a", .token = out.token, .result = "r"}).ok());
  const auto s1 = stats();
  EXPECT_EQ(s1.round_trips - s0.round_trips, 2u) << "claim + complete";
  idem::ClaimOutcome dup = store->claim(claim_req("rt:a")).value();
  EXPECT_EQ(dup.status, idem::ClaimStatus::kCompleted);
  const auto s2 = stats();
  EXPECT_EQ(s2.round_trips - s1.round_trips, 1u) << "a duplicate is one round trip";

  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("rt:batch:" + std::to_string(i));
  std::vector<idem::ClaimRequest> batch;
  for (const auto& k : keys) batch.push_back(claim_req(k));
  std::vector<idem::ClaimOutcome> outs = store->claim_many(batch).value();
  const auto s3 = stats();
  ASSERT_EQ(outs.size(), 100u);
  for (const auto& o : outs) EXPECT_TRUE(o.acquired());
  EXPECT_EQ(s3.round_trips - s2.round_trips, 1u) << "claim_many(100) must be one round trip";
  EXPECT_EQ(s3.calls - s2.calls, 1u);

  // A batch far beyond what one statement's claim locks may hold (the lock
  // table of this server has room for about 15,000): several statements,
  // each committed by its own Sync, still one round trip.
  batch.clear();
  keys.clear();
  for (int i = 0; i < 50'000; ++i) keys.push_back("rt:big:" + std::to_string(i));
  for (const auto& k : keys) batch.push_back(claim_req(k));
  batch.push_back(claim_req("rt:big:7"));  // a repeat, answered from the first occurrence
  auto big = store->claim_many(batch);
  ASSERT_TRUE(big.ok()) << big.error().to_string();
  const auto s4 = stats();
  ASSERT_EQ(big->size(), batch.size());
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_TRUE((*big)[i].acquired()) << keys[i];
  EXPECT_EQ(big->back().status, idem::ClaimStatus::kInProgress);
  EXPECT_EQ(s4.round_trips - s3.round_trips, 1u) << "claim_many(50,000) must be one round trip";
}

TEST(PostgresStore, BatchRepeatsGetWhatASecondClaimWouldGet) {
  auto store = open_store();
  ASSERT_TRUE(store);
  // A retryable failure stored under payload A: a claim with payload B is a
  // mismatch, and right after it a claim with payload A retries.
  idem::ClaimRequest a = claim_req("rep:failed");
  a.fingerprint = "fp-A";
  idem::ClaimOutcome first = store->claim(a).value();
  ASSERT_TRUE(store->fail({.key = "rep:failed", .token = first.token, .error = "e", .retryable = true}).ok());
  idem::ClaimRequest b = a;
  b.fingerprint = "fp-B";
  idem::ClaimRequest fresh_b = claim_req("rep:new");
  fresh_b.fingerprint = "fp-B";
  idem::ClaimRequest fresh_a = fresh_b;
  fresh_a.fingerprint = "fp-A";
  std::vector<idem::ClaimRequest> batch = {b, a, a, fresh_b, fresh_a, fresh_b};
  std::vector<idem::ClaimOutcome> outs = store->claim_many(batch).value();
  ASSERT_EQ(outs.size(), batch.size());
  EXPECT_EQ(outs[0].status, idem::ClaimStatus::kMismatch);
  EXPECT_EQ(outs[1].status, idem::ClaimStatus::kAcquired);
  EXPECT_EQ(outs[1].acquire_kind, idem::AcquireKind::kRetry);
  EXPECT_EQ(outs[2].status, idem::ClaimStatus::kInProgress);
  EXPECT_EQ(outs[3].status, idem::ClaimStatus::kAcquired);
  EXPECT_EQ(outs[4].status, idem::ClaimStatus::kMismatch);
  EXPECT_EQ(outs[5].status, idem::ClaimStatus::kInProgress);
  ASSERT_TRUE(outs[5].record.has_value());
  EXPECT_EQ(outs[5].record->token, outs[3].token);
}

TEST(PostgresStore, OverlappingBatchesInOppositeOrdersDoNotDeadlock) {
  auto store = open_store("pool_size=4");
  ASSERT_TRUE(store);
  constexpr int kKeys = 200;
  constexpr int kRounds = 10;
  std::atomic<int> errors{0};
  std::vector<std::atomic<int>> acquired(kKeys);
  auto run = [&](bool reverse, int round) {
    std::vector<std::string> keys;
    for (int i = 0; i < kKeys; ++i) {
      keys.push_back("ovl:" + std::to_string(round) + ":" + std::to_string(reverse ? kKeys - 1 - i : i));
    }
    std::vector<idem::ClaimRequest> reqs;
    for (const auto& k : keys) reqs.push_back(claim_req(k));
    auto outs = store->claim_many(reqs);
    if (!outs) {
      errors.fetch_add(1);
      ADD_FAILURE() << outs.error().to_string();
      return;
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if ((*outs)[i].acquired())
        acquired[static_cast<std::size_t>(std::stoi(keys[i].substr(keys[i].rfind(':') + 1)))]++;
    }
  };
  for (int round = 0; round < kRounds; ++round) {
    std::thread forward(run, false, round);
    std::thread backward(run, true, round);
    // And the asynchronous path at the same time.
    std::atomic<bool> async_done{false};
    std::vector<idem::ClaimRequest> reqs;
    std::vector<std::string> keys;
    for (int i = 0; i < kKeys; i += 3) keys.push_back("ovl:" + std::to_string(round) + ":" + std::to_string(i));
    for (const auto& k : keys) reqs.push_back(claim_req(k));
    store->claim_many_async(reqs, [&](idem::Result<std::vector<idem::ClaimOutcome>> r) {
      if (!r) {
        errors.fetch_add(1);
      } else {
        for (std::size_t i = 0; i < keys.size(); ++i) {
          if ((*r)[i].acquired())
            acquired[static_cast<std::size_t>(std::stoi(keys[i].substr(keys[i].rfind(':') + 1)))]++;
        }
      }
      async_done = true;
    });
    forward.join();
    backward.join();
    while (!async_done) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(errors.load(), 0);
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(acquired[static_cast<std::size_t>(i)].load(), kRounds) << i;
}

TEST(PostgresStore, AsyncIsNativeAndCompletesOnTheIoThread) {
  auto store = open_store();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->async_is_native());
  std::mutex m;
  std::condition_variable cv;
  int finished = 0;
  std::thread::id io_thread;
  std::optional<idem::Error> sync_inside;
  constexpr int kKeys = 200;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "async:" + std::to_string(i);
    store->claim_async(claim_req(key), [&, key](idem::Result<idem::ClaimOutcome> r) {
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      ASSERT_TRUE(r->acquired());
      // Chain the completion from inside the callback, as an event loop would.
      store->complete_async({.key = key, .token = r->token, .result = "done"}, [&](idem::Status s) {
        EXPECT_TRUE(s.ok()) << s.error().to_string();
        std::lock_guard lock(m);
        if (io_thread == std::thread::id()) {
          io_thread = std::this_thread::get_id();
          // A synchronous call from here would wait for this very thread.
          auto got = store->get("async:0");
          if (!got) sync_inside = got.error();
        }
        ++finished;
        cv.notify_all();
      });
    });
  }
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return finished == kKeys; }));
  EXPECT_NE(io_thread, std::this_thread::get_id());
  ASSERT_TRUE(sync_inside.has_value());
  EXPECT_EQ(sync_inside->code(), idem::ErrorCode::kInternal);
  lock.unlock();
  auto rec = store->get("async:7").value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, "done");
}

TEST(PostgresStore, WaitSettledIsWokenByTheCompletion) {
  auto store = open_store();
  ASSERT_TRUE(store);
  idem::ClaimOutcome out = store->claim(claim_req("wait:a")).value();
  ASSERT_TRUE(out.acquired());
  std::thread completer([&] {
    std::this_thread::sleep_for(300ms);
    EXPECT_TRUE(store->complete({.key = "wait:a", .token = out.token, .result = "late"}).ok());
  });
  const auto start = std::chrono::steady_clock::now();
  auto settled = store->wait_settled("wait:a", 10s);
  const auto waited = std::chrono::steady_clock::now() - start;
  completer.join();
  ASSERT_TRUE(settled.ok()) << settled.error().to_string();
  ASSERT_TRUE(settled->has_value());
  EXPECT_EQ((*settled)->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ((*settled)->result, "late");
  // Woken by NOTIFY, not by the 1 s safety poll.
  EXPECT_LT(waited, 900ms);
  EXPECT_GE(waited, 250ms);

  // A timeout returns the record still PROCESSING.
  idem::ClaimOutcome busy = store->claim(claim_req("wait:b")).value();
  ASSERT_TRUE(busy.acquired());
  auto still = store->wait_settled("wait:b", 200ms).value();
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->status, idem::ProcessingStatus::kProcessing);
}

TEST(PostgresStore, InvalidKeysAreTypedErrors) {
  auto store = open_store();
  ASSERT_TRUE(store);
  const std::string bad("bad\xff\xfekey", 8);
  auto r = store->claim(claim_req(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), idem::ErrorCode::kInvalidArgument);
  EXPECT_EQ(store->claim(claim_req("")).error().code(), idem::ErrorCode::kInvalidArgument);
  // The store is still fine afterwards.
  EXPECT_TRUE(store->claim(claim_req("fine")).value().acquired());
}

TEST(PostgresStore, UrlParsingAndRedaction) {
  auto opts = idem::PostgresStore::parse_url(
      "postgresql://app%40x:p%40ss@db1:5433,db2/orders?schema=idem_app&pool_size=4&sslmode=verify-full&"
      "sslrootcert=/etc/ca.pem&command_timeout_ms=250&target_session_attrs=read-write");
  ASSERT_TRUE(opts.ok()) << opts.error().to_string();
  EXPECT_EQ(opts->user, "app@x");
  EXPECT_EQ(opts->password, "p@ss");
  EXPECT_EQ(opts->host, "db1,db2");
  EXPECT_EQ(opts->port, "5433,");
  EXPECT_EQ(opts->dbname, "orders");
  EXPECT_EQ(opts->schema, "idem_app");
  EXPECT_EQ(opts->pool_size, 4u);
  EXPECT_EQ(opts->sslmode, "verify-full");
  EXPECT_EQ(opts->sslrootcert, "/etc/ca.pem");
  EXPECT_EQ(opts->command_timeout, 250ms);
  ASSERT_EQ(opts->libpq_params.size(), 1u);
  EXPECT_EQ(opts->libpq_params[0].first, "target_session_attrs");

  EXPECT_EQ(idem::PostgresStore::redact_url("postgresql://u:secret@h/db?password=other&sslmode=require"),
            "postgresql://u:***@h/db?password=***&sslmode=require");
  // Found by fuzz_postgres: a "://" inside the query must not hide it.
  EXPECT_EQ(idem::PostgresStore::redact_url("x?a=://&password=s3"), "x?a=://&password=***");
  EXPECT_EQ(idem::PostgresStore::redact_url("postgresql://h/db?p%61ssword=s3"), "postgresql://h/db?p%61ssword=***");
  for (const char* bad : {"postgresql://u:secret@h/db?schema=Bad-Name", "postgresql://u:secret@h/db?nope=1",
                          "postgresql://u:secret@h:99999/db", "postgresql://u:secret@h/db?pool_size=0",
                          "mysql://u:secret@h/db", "postgresql://u:secret@h/db?sslmode=sometimes"}) {
    auto r = idem::PostgresStore::parse_url(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), idem::ErrorCode::kInvalidConfiguration);
    EXPECT_EQ(r.error().message().find("secret"), std::string::npos) << r.error().message();
  }
}

TEST(PostgresStore, WrongPasswordIsUnavailableAndNeverEchoed) {
  std::string url = server().url();
  url.replace(url.find(PostgresServer::kPassword), PostgresServer::kPassword.size(), "wrong-secret-123");
  auto store = idem::PostgresStore::open(url + "&schema=" + fresh_schema());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code(), idem::ErrorCode::kUnavailable);
  EXPECT_EQ(store.error().message().find("wrong-secret-123"), std::string::npos) << store.error().message();
  EXPECT_NE(store.error().message().find("password authentication failed"), std::string::npos)
      << store.error().message();
}

TEST(PostgresStore, TlsVerifyFull) {
  const std::string q = "sslmode=verify-full&sslrootcert=" + server().ca_file() + "&schema=" + fresh_schema();
  auto store = idem::PostgresStore::open(server().url(q));
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  idem::ClaimOutcome out = (*store)->claim(claim_req("tls:a")).value();
  ASSERT_TRUE(out.acquired());
  ASSERT_TRUE((*store)->complete({.key = "tls:a", .token = out.token, .result = "r"}).ok());
  // The server sees this session encrypted.
  auto ssl = server().exec(
      "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
      "WHERE s.ssl AND a.application_name = 'idem'");
  ASSERT_TRUE(ssl.has_value());
  EXPECT_NE(*ssl, "0");
  // A CA that did not sign the server's certificate is refused.
  const std::string other_ca = server().dir() + "/server.crt";  // not a CA of the chain
  auto refused = idem::PostgresStore::open(
      server().url("sslmode=verify-full&sslrootcert=" + other_ca + "&schema=" + fresh_schema()));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), idem::ErrorCode::kUnavailable);
}

TEST(PostgresStore, LeastPrivilegeRoleWithMigrateOff) {
  const std::string schema = fresh_schema();
  // The owner creates the schema once.
  auto owner = idem::PostgresStore::open(server().url("schema=" + schema));
  ASSERT_TRUE(owner.ok()) << owner.error().to_string();
  // A role with exactly the grants docs/postgres.md lists.
  std::string err;
  ASSERT_TRUE(server().exec("DROP ROLE IF EXISTS idem_app_" + schema + "; CREATE ROLE idem_app_" + schema +
                                " LOGIN PASSWORD 'app-pw'; "
                                "GRANT USAGE ON SCHEMA " +
                                schema + " TO idem_app_" + schema + "; GRANT SELECT, INSERT, UPDATE, DELETE ON " +
                                schema + ".records TO idem_app_" + schema + "; GRANT SELECT ON " + schema +
                                ".schema_version TO idem_app_" + schema + "; GRANT USAGE ON SEQUENCE " + schema +
                                ".tokens TO idem_app_" + schema,
                            &err))
      << err;
  const std::string url = "postgresql://idem_app_" + schema + ":app-pw@127.0.0.1:" + std::to_string(server().port()) +
                          "/postgres?sslmode=disable&migrate=0&schema=" + schema;
  auto app = idem::PostgresStore::open(url);
  ASSERT_TRUE(app.ok()) << app.error().to_string();
  idem::ClaimOutcome out = (*app)->claim(claim_req("lp:a")).value();
  ASSERT_TRUE(out.acquired());
  ASSERT_TRUE((*app)->complete({.key = "lp:a", .token = out.token, .result = "r"}).ok());
  EXPECT_TRUE((*app)->remove("lp:a").value());
  EXPECT_TRUE((*app)->stats().ok());
  EXPECT_TRUE((*app)->sweep().ok());
  // With migrate=0 a missing schema is reported, not created.
  auto missing = idem::PostgresStore::open(server().url("migrate=0&schema=" + fresh_schema()));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), idem::ErrorCode::kNotFound);
  // So does an inspection open (create_if_missing = false): nothing is created.
  const std::string absent = fresh_schema();
  auto inspect = idem::open_store(server().url("schema=" + absent), {.create_if_missing = false});
  ASSERT_FALSE(inspect.ok());
  EXPECT_EQ(inspect.error().code(), idem::ErrorCode::kNotFound);
  EXPECT_EQ(server().exec("SELECT count(*) FROM pg_namespace WHERE nspname = '" + absent + "'"),
            std::optional<std::string>("0"));
  EXPECT_NE(missing.error().message().find("migrate=0"), std::string::npos);
}

TEST(PostgresStore, SchemaIsIdempotentAndNewerVersionsAreRefused) {
  const std::string schema = fresh_schema();
  std::vector<std::thread> openers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    openers.emplace_back([&] {
      if (idem::PostgresStore::open(server().url("schema=" + schema)).ok()) ok.fetch_add(1);
    });
  }
  for (auto& t : openers) t.join();
  EXPECT_EQ(ok.load(), 4) << "concurrent first opens must all succeed";
  EXPECT_EQ(server().exec("SELECT string_agg(version::text, ',') FROM " + schema + ".schema_version"),
            std::optional<std::string>("1"));
  ASSERT_TRUE(server().exec("INSERT INTO " + schema + ".schema_version (version) VALUES (99)"));
  auto newer = idem::PostgresStore::open(server().url("schema=" + schema));
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.error().code(), idem::ErrorCode::kInvalidConfiguration);
  EXPECT_NE(newer.error().message().find("newer Idem"), std::string::npos) << newer.error().message();
}

TEST(PostgresStore, BackgroundSweeperRemovesExpiredRecords) {
  const std::string schema = fresh_schema();
  auto store = idem::PostgresStore::open(server().url("schema=" + schema + "&sweep_interval_ms=100"));
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 20; ++i) {
    const std::string k = "sw:" + std::to_string(i);
    idem::ClaimRequest r = claim_req(k);
    r.lease = 10ms;
    r.ttl = 10ms;
    ASSERT_TRUE((*store)->claim(r).value().acquired());
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::optional<std::string> left;
  while (std::chrono::steady_clock::now() < deadline) {
    left = server().exec("SELECT count(*) FROM " + schema + ".records");
    if (left == std::optional<std::string>("0")) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(left, std::optional<std::string>("0")) << "the sweeper did not remove expired rows";
}

TEST(PostgresStore, OpensThroughOpenStoreAndTheChecker) {
  auto store = idem::open_store(server().url("schema=" + fresh_schema()));
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  EXPECT_EQ((*store)->kind(), "postgresql");
  auto checker = idem::IdempotencyChecker::from_url(server().url("schema=" + fresh_schema()));
  ASSERT_TRUE(checker.ok());
  idem::Envelope e;
  e.event_id = "evt-1";
  auto claim = (*checker)->claim(e).value();
  ASSERT_TRUE(claim.outcome.acquired());
  EXPECT_TRUE((*checker)->complete(claim.key, claim.outcome.token, "{}").ok());
  EXPECT_TRUE((*checker)->is_duplicate("evt-1").value());
}

// A raw libpq session of the test itself (the superuser), for locks that
// must outlive one statement.
struct RawSession {
  PGconn* conn = PQconnectdb(server().url().c_str());
  RawSession() = default;
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  ~RawSession() { PQfinish(conn); }
  bool ok() const { return PQstatus(conn) == CONNECTION_OK; }
  std::string query(const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    std::string out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return out;
  }
};

// Counts sessions waiting for an advisory lock: the test's gate is the
// one-key form (objsubid 1), the claim lock the two-key form (objsubid 2).
int advisory_waiters(int objsubid) {
  return std::stoi(
      server()
          .exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = " +
                std::to_string(objsubid))
          .value_or("0"));
}

// The window the claim lock closes: claim A draws its token for a brand-new
// row and, before its insert lands, claim B inserts the same key, completes
// it and removes it. A trigger of this test (BEFORE INSERT fires after the
// row, token included, was built and before the conflict check) holds A in
// exactly that window until the test opens a gate. Without the claim lock B
// goes through and A's row then carries a lower token than B's earlier life;
// with it, B waits for A and finds A's live claim.
void token_order_across_lives(bool batch) {
  const std::string schema = fresh_schema();
  const std::string base = "schema=" + schema;
  auto a_store = idem::PostgresStore::open(server().url(base + "&application_name=race-a"));
  auto b_store = idem::PostgresStore::open(server().url(base));
  ASSERT_TRUE(a_store.ok() && b_store.ok());
  ASSERT_TRUE(server().exec("CREATE FUNCTION " + schema +
                            ".hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                            "IF NEW.key = 'race' AND current_setting('application_name') = 'race-a' THEN "
                            "PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NEW; END $$; "
                            "CREATE TRIGGER hold BEFORE INSERT ON " +
                            schema + ".records FOR EACH ROW EXECUTE FUNCTION " + schema + ".hold()"));
  RawSession gate;
  ASSERT_TRUE(gate.ok());
  gate.query("SELECT pg_advisory_lock(4242)");

  auto a = std::async(std::launch::async, [&]() -> idem::Result<idem::ClaimOutcome> {
    if (!batch) return (*a_store)->claim(claim_req("race"));
    std::vector<idem::ClaimRequest> reqs{claim_req("race"), claim_req("race-other")};
    auto outs = (*a_store)->claim_many(reqs);
    if (!outs) return std::move(outs).error();
    return (*outs)[0];
  });
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (advisory_waiters(1) == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(advisory_waiters(1), 1) << "claim A never reached the gate";

  auto b = std::async(std::launch::async, [&] { return (*b_store)->claim(claim_req("race")); });
  bool b_waited = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (b.wait_for(5ms) == std::future_status::ready) break;
    if (advisory_waiters(2) > 0) {
      b_waited = true;
      break;
    }
  }
  std::optional<idem::Token> b_life;
  if (!b_waited) {
    // B went through: its life runs to the end while A sits in its window.
    idem::ClaimOutcome out = b.get().value();
    ASSERT_TRUE(out.acquired());
    b_life = out.token;
    ASSERT_TRUE((*b_store)->complete({.key = "race", .token = out.token, .result = "b"}).ok());
    ASSERT_TRUE((*b_store)->remove("race").value());
  }
  gate.query("SELECT pg_advisory_unlock(4242)");
  idem::ClaimOutcome a_out = a.get().value();
  ASSERT_TRUE(a_out.acquired());
  if (b_life) {
    EXPECT_GT(a_out.token, *b_life) << "a later life of the key got a lower token than an earlier one";
    return;
  }
  // B waited for A's claim to commit, then found A's live lease.
  idem::ClaimOutcome b_out = b.get().value();
  EXPECT_EQ(b_out.status, idem::ClaimStatus::kInProgress);
  auto rec = (*b_store)->get("race").value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->token, a_out.token);
}

TEST(PostgresStore, TokensIncreaseAcrossLivesWhenAKeyIsReinsertedAndRemovedMidClaim) {
  token_order_across_lives(false);
}

TEST(PostgresStore, BatchTokensIncreaseAcrossLivesWhenAKeyIsReinsertedAndRemovedMidClaim) {
  token_order_across_lives(true);
}

}  // namespace
