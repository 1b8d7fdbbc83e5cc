// Integration tests of RedisStore against a real standalone redis-server that
// the test starts: the command-count promises (INFO commandstats), the swap
// completion and its fallbacks, record size (MEMORY USAGE), pipelining of
// concurrent callers, wait_settled, scan pages and URL parsing. The contract
// suite on a standalone server is in redis_contract_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "idem/core/key.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using idem::test::RedisServer;

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new idem::test::StandaloneRedis);
RedisServer* redis() { return idem::test::StandaloneRedis::server(); }

std::shared_ptr<idem::Store> open_store(const std::string& query = "") {
  auto store = idem::RedisStore::open(redis()->url() + "/0" + query);
  EXPECT_TRUE(store.ok()) << store.error().to_string();
  return store.ok() ? *store : nullptr;
}

std::map<std::string, std::uint64_t> command_stats() {
  std::map<std::string, std::uint64_t> out;
  std::optional<std::string> info = redis()->command({"INFO", "commandstats"});
  if (!info) return out;
  std::istringstream in(*info);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("cmdstat_")) continue;
    const auto colon = line.find(':');
    const auto calls = line.find("calls=");
    out[line.substr(8, colon - 8)] = std::stoull(line.substr(calls + 6));
  }
  return out;
}

// Calls per command between two snapshots (INFO itself excluded). Redis
// counts the commands our scripts call too, so this is the full server-side
// cost of an operation; what the client sent is checked with client_stats().
std::map<std::string, std::uint64_t> delta(const std::map<std::string, std::uint64_t>& before,
                                           const std::map<std::string, std::uint64_t>& after) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [name, calls] : after) {
    const auto it = before.find(name);
    const std::uint64_t d = calls - (it == before.end() ? 0 : it->second);
    if (d > 0 && name != "info") out[name] = d;
  }
  return out;
}

using Counts = std::map<std::string, std::uint64_t>;

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = key.substr(key.rfind(':') + 1);
  r.event_type = "order.created";
  return r;
}

// The client refreshes its estimate of the server clock with a TIME now and
// then (server_clock.h); `without_clock()` takes those out of the counts.
struct ClientDelta {
  std::uint64_t commands;
  std::uint64_t round_trips;
  std::uint64_t clock_syncs;
};
ClientDelta client_delta(const idem::RedisClientStats& a, const idem::RedisClientStats& b) {
  const std::uint64_t syncs = b.clock_syncs - a.clock_syncs;
  return {b.commands - a.commands - syncs, b.round_trips - a.round_trips, syncs};
}
Counts without_clock(Counts server, std::uint64_t syncs) {
  if (syncs > 0 && (server["time"] -= syncs) == 0) server.erase("time");
  return server;
}

TEST(RedisStore, NewEventIsTwoCommandsDuplicateOneBatchOneRoundTrip) {
  std::shared_ptr<idem::Store> store = open_store("?pool_size=1");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->ping().ok());  // connect, load the scripts, sample the clock first
  const std::string key = "idempotency:events:cmdcount-1";
  auto client = [&] { return *idem::RedisStore::client_stats(*store); };

  // New event: claim + complete = 2 commands, 2 round trips: a plain
  // SET NX GET, then the swap script (GET, compare, SET inside): the store
  // still holds the record its claim wrote and completes it as is.
  auto before = command_stats();
  auto c0 = client();
  idem::ClaimOutcome out = store->claim(claim_req(key)).value();
  ASSERT_TRUE(out.acquired());
  ASSERT_TRUE(store->complete({.key = key, .token = out.token, .result = R"({"ok":true})"}).ok());
  auto after = command_stats();
  auto c1 = client();
  ClientDelta d = client_delta(c0, c1);
  EXPECT_EQ(d.commands, 2u);
  EXPECT_LE(d.round_trips, 2u + d.clock_syncs);
  EXPECT_EQ(without_clock(delta(before, after), d.clock_syncs), (Counts{{"set", 2}, {"evalsha", 1}, {"get", 1}}));

  // Duplicate of a completed event: 1 command (the same SET NX GET, which
  // writes nothing and returns the record), 1 round trip, no script.
  before = after;
  idem::ClaimOutcome dup = store->claim(claim_req(key)).value();
  EXPECT_EQ(dup.status, idem::ClaimStatus::kCompleted);
  ASSERT_TRUE(dup.record.has_value());
  EXPECT_EQ(dup.record->result, R"({"ok":true})");
  after = command_stats();
  auto c2 = client();
  d = client_delta(c1, c2);
  EXPECT_EQ(d.commands, 1u);
  EXPECT_LE(d.round_trips, 1u + d.clock_syncs);
  EXPECT_EQ(without_clock(delta(before, after), d.clock_syncs), (Counts{{"set", 1}}));

  // A batch of N claims: N commands in 1 round trip.
  std::vector<std::string> keys;
  for (int i = 0; i < 50; ++i) keys.push_back("idempotency:events:batch-" + std::to_string(i));
  std::vector<idem::ClaimRequest> batch;
  for (const std::string& k : keys) batch.push_back(claim_req(k));
  before = command_stats();
  std::vector<idem::ClaimOutcome> outs = store->claim_many(batch).value();
  after = command_stats();
  auto c3 = client();
  ASSERT_EQ(outs.size(), keys.size());
  for (const auto& o : outs) EXPECT_TRUE(o.acquired());
  d = client_delta(c2, c3);
  EXPECT_EQ(d.commands, 50u);
  EXPECT_LE(d.round_trips, 1u + d.clock_syncs) << "a batch must be one round trip";
  EXPECT_EQ(without_clock(delta(before, after), d.clock_syncs), (Counts{{"set", 50}}));

  // A takeover goes on to the claim script: 2 commands (the SET NX GET that
  // found the expired lease, then the script).
  const std::string stale = "idempotency:events:cmdcount-stale";
  idem::ClaimRequest short_lease = claim_req(stale);
  short_lease.lease = std::chrono::milliseconds(20);
  ASSERT_TRUE(store->claim(short_lease).value().acquired());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  before = command_stats();
  auto c4 = client();
  idem::ClaimOutcome takeover = store->claim(claim_req(stale)).value();
  ASSERT_TRUE(takeover.acquired());
  EXPECT_EQ(takeover.acquire_kind, idem::AcquireKind::kTakeover);
  after = command_stats();
  d = client_delta(c4, client());
  EXPECT_EQ(d.commands, 2u);
  EXPECT_EQ(without_clock(delta(before, after), d.clock_syncs), (Counts{{"set", 3}, {"evalsha", 1}, {"time", 1}}));

  // A record changed since the claim (here a checkpoint) is not what the
  // swap script expects, and a takeover's record was never the store's own:
  // complete runs the finish script, which reads and rewrites it.
  ASSERT_TRUE(store->checkpoint(stale, takeover.token, {"step", "1"}).ok());
  ASSERT_TRUE(store->complete({.key = stale, .token = takeover.token, .result = "r"}).ok());
  const auto rec = store->get(stale).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->checkpoint, (idem::Checkpoint{"step", "1"}));
}

// The swap script replaces a record only when it holds the very bytes the
// claim wrote: after a checkpoint (or an extension, a waiter's mark), or once
// another owner took over, complete and fail go through the full script, and
// a stale owner is refused.
TEST(RedisStore, SwapCompletionFallsBackWhenTheRecordChanged) {
  std::shared_ptr<idem::Store> store = open_store("?pool_size=1");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->ping().ok());
  const std::string key = "idempotency:events:swap-fallback";
  idem::ClaimRequest r = claim_req(key);
  r.lease = std::chrono::milliseconds(30);
  idem::ClaimOutcome first = store->claim(r).value();
  ASSERT_TRUE(first.acquired());
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  idem::ClaimOutcome second = store->claim(claim_req(key)).value();
  ASSERT_TRUE(second.acquired());
  // The first owner's cached record no longer matches: lease lost, nothing written.
  idem::Status late = store->fail({.key = key, .token = first.token, .error = "late", .retryable = false});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), idem::ErrorCode::kLeaseLost);
  ASSERT_TRUE(store->complete({.key = key, .token = second.token, .result = "ok"}).ok());
  auto rec = store->get(key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, "ok");
  EXPECT_EQ(rec->token, second.token);
  EXPECT_EQ(rec->attempt, 2u);

  // Checkpointed after a plain claim: the swap misses, the finish script
  // keeps the checkpoint.
  const std::string cp = "idempotency:events:swap-checkpoint";
  idem::ClaimOutcome own = store->claim(claim_req(cp)).value();
  ASSERT_TRUE(own.acquired());
  ASSERT_TRUE(store->checkpoint(cp, own.token, {"half", "way"}).ok());
  const std::uint64_t evals = redis()->stat_calls("evalsha");
  ASSERT_TRUE(store->fail({.key = cp, .token = own.token, .error = "no", .retryable = true}).ok());
  EXPECT_EQ(redis()->stat_calls("evalsha") - evals, 2u) << "the swap, then the finish script";
  rec = store->get(cp).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kFailed);
  EXPECT_EQ(rec->error, "no");
  EXPECT_EQ(rec->checkpoint, (idem::Checkpoint{"half", "way"}));
}

TEST(RedisStore, CompletedRecordIsAtMost200Bytes) {
  std::shared_ptr<idem::Store> store = open_store();
  ASSERT_TRUE(store);
  const std::string id = "3f2b8c1e-7d4a-4e9b-9a1c-5d6e7f8a9b0c";  // 36 characters
  const std::string key = std::string(idem::kDefaultKeyPrefix) + id;
  const std::string result = R"({"status":"ok","charge":"c_42"})";
  ASSERT_EQ(result.size(), 31u);
  const std::string result30 = result.substr(0, 30);
  idem::ClaimRequest r = claim_req(key);
  r.event_id = id;
  r.event_type = "";
  idem::ClaimOutcome out = store->claim(r).value();
  ASSERT_TRUE(out.acquired());
  ASSERT_TRUE(store->complete({.key = key, .token = out.token, .result = result30}).ok());
  std::optional<std::string> bytes = redis()->command({"MEMORY", "USAGE", key, "SAMPLES", "0"});
  ASSERT_TRUE(bytes.has_value());
  const unsigned long usage = std::stoul(*bytes);
  RecordProperty("memory_usage_bytes", std::to_string(usage));
  std::cout << "[ INFO     ] MEMORY USAGE of a completed record: " << usage << " bytes\n";
  EXPECT_LE(usage, 200u);
  // And the record still reads back whole (event id recovered from the key).
  auto rec = store->get(key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->event_id, id);
  EXPECT_EQ(rec->result, result30);
  EXPECT_EQ(rec->status, idem::ProcessingStatus::kCompleted);
  // Every key carries a TTL.
  std::optional<std::string> pttl = redis()->command({"PTTL", key});
  ASSERT_TRUE(pttl.has_value());
  EXPECT_GT(std::stoll(*pttl), 0);
}

TEST(RedisStore, EveryWrittenKeyHasATtl) {
  std::shared_ptr<idem::Store> store = open_store();
  ASSERT_TRUE(store);
  redis()->command({"FLUSHALL"});
  const std::string k = "idempotency:events:ttl-";
  auto a = store->claim(claim_req(k + "a")).value();
  auto b = store->claim(claim_req(k + "b")).value();
  auto c = store->claim(claim_req(k + "c")).value();
  ASSERT_TRUE(store->complete({.key = k + "a", .token = a.token, .result = "r"}).ok());
  ASSERT_TRUE(store->fail({.key = k + "b", .token = b.token, .error = "e", .retryable = false}).ok());
  ASSERT_TRUE(store->extend(k + "c", c.token, std::chrono::seconds(100)).ok());
  ASSERT_TRUE(store->checkpoint(k + "c", c.token, {"n", "d"}).ok());
  for (const std::string& key : {k + "a", k + "b", k + "c"}) {
    EXPECT_GT(std::stoll(redis()->command({"PTTL", key}).value_or("-9")), 0) << key;
  }
  EXPECT_EQ(redis()->command({"DBSIZE"}).value_or(""), "3");
}

TEST(RedisStore, ConcurrentCallersArePipelinedOnOneConnection) {
  std::shared_ptr<idem::Store> store = open_store("?pool_size=1");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->ping().ok());
  const auto before = *idem::RedisStore::client_stats(*store);
  constexpr int kThreads = 32;
  constexpr int kPerThread = 200;
  std::atomic<int> acquired{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = "idempotency:events:pipe-" + std::to_string(t) + "-" + std::to_string(i);
        auto out = store->claim(claim_req(key));
        if (!out) {
          errors.fetch_add(1);
        } else if (out->acquired()) {
          acquired.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto after = *idem::RedisStore::client_stats(*store);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(acquired.load(), kThreads * kPerThread);
  // Without the clock refreshes (one TIME per 100 ms in use: a loaded
  // machine stretches the run past one).
  const ClientDelta d = client_delta(before, after);
  const auto commands = d.commands;
  const auto trips = d.round_trips;
  EXPECT_EQ(commands, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_LT(trips, commands) << "concurrent requests were not batched";
  std::cout << "[ INFO     ] " << commands << " commands in " << trips << " round trips\n";
}

TEST(RedisStore, ScriptsAreReloadedAfterScriptFlush) {
  std::shared_ptr<idem::Store> store = open_store("?pool_size=1");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->ping().ok());
  ASSERT_TRUE(redis()->command({"SCRIPT", "FLUSH"}).has_value());
  auto out = store->claim(claim_req("idempotency:events:noscript"));
  ASSERT_TRUE(out.ok()) << out.error().to_string();
  EXPECT_TRUE(out->acquired());
}

TEST(RedisStore, WaitForReplicasWithoutReplicasIsUnavailableNotAcquired) {
  std::shared_ptr<idem::Store> store = open_store("?wait_replicas=1&wait_timeout_ms=50");
  ASSERT_TRUE(store);
  auto out = store->claim(claim_req("idempotency:events:wait-1"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), idem::ErrorCode::kUnavailable) << out.error().to_string();
  EXPECT_EQ(idem::RedisStore::client_stats(*store)->circuit, idem::CircuitState::kClosed)
      << "a WAIT shortfall is not a Redis outage";
}

TEST(RedisStoreUrl, ParsesEveryForm) {
  auto o = idem::RedisStore::parse_url("redis://user:p%40ss@10.0.0.1:6380/3?command_timeout_ms=250&pool_size=4");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->mode, idem::RedisMode::kStandalone);
  EXPECT_EQ(o->username, "user");
  EXPECT_EQ(o->password, "p@ss");
  EXPECT_EQ(o->endpoints.at(0).host, "10.0.0.1");
  EXPECT_EQ(o->endpoints.at(0).port, 6380);
  EXPECT_EQ(o->db, 3);
  EXPECT_EQ(o->command_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(o->pool_size, 4u);

  o = idem::RedisStore::parse_url("rediss://:secret@cache.local?ca=/etc/ca.pem&sni=cache&verify=1");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_TRUE(o->tls.enabled);
  EXPECT_EQ(o->password, "secret");
  EXPECT_TRUE(o->username.empty());
  EXPECT_EQ(o->tls.ca_file, "/etc/ca.pem");
  EXPECT_EQ(o->tls.sni, "cache");
  EXPECT_EQ(o->endpoints.at(0).port, 6379);

  o = idem::RedisStore::parse_url("redis+sentinel://s1:26379,s2:26380,[::1]:26381/mymaster/2");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->mode, idem::RedisMode::kSentinel);
  ASSERT_EQ(o->endpoints.size(), 3u);
  EXPECT_EQ(o->endpoints[2].host, "::1");
  EXPECT_EQ(o->master_name, "mymaster");
  EXPECT_EQ(o->db, 2);

  o = idem::RedisStore::parse_url("redis+cluster://n1:7000,n2:7001");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->mode, idem::RedisMode::kCluster);
  EXPECT_EQ(o->endpoints.size(), 2u);

  for (const char* bad :
       {"http://x", "redis://h:0", "redis://h:99999", "redis://h/abc", "redis://a,b", "redis+sentinel://s1",
        "redis+cluster://n1/2", "redis://h?nope=1", "redis://u:%zz@h", "redis://h?pool_size=0", "redis://h?verify=2"}) {
    auto r = idem::RedisStore::parse_url(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), idem::ErrorCode::kInvalidConfiguration) << bad;
    }
  }
  // The password never shows up in error messages.
  auto r = idem::RedisStore::parse_url("redis://u:topsecret@h?nope=1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message().find("topsecret"), std::string::npos) << r.error().message();
}

}  // namespace

// The contract suite on a standalone server runs in redis_contract_test.cpp.

namespace {

// Pages that end inside a SCAN batch are resumed by repeating the batch's
// cursor and skipping the keys already returned. Small, uneven page sizes
// over many keys must still return every key exactly once. (The cluster
// contract test once lost a key when resumption skipped by position; this
// test did not reproduce that on standalone, it guards the resume logic.)
TEST(RedisScan, UnevenPagesReturnEveryKeyExactlyOnce) {
  if (redis() == nullptr) GTEST_SKIP() << "no server";
  redis()->command({"FLUSHALL"});
  auto store = open_store();
  ASSERT_TRUE(store);
  const std::string prefix = "idempotency:events:scan-pages:";
  constexpr int kKeys = 600;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = prefix + std::to_string(i);
    idem::ClaimRequest request;
    request.key = key;
    request.event_id = std::to_string(i);
    ASSERT_TRUE(store->claim(request).ok());
  }
  for (const std::size_t limit : {std::size_t{7}, std::size_t{13}, std::size_t{1}, std::size_t{250}}) {
    idem::ScanOptions options;
    options.prefix = prefix;
    options.limit = limit;
    std::multiset<std::string> seen;
    for (int pages = 0; pages < 10'000; ++pages) {
      auto page = store->scan(options);
      ASSERT_TRUE(page.ok()) << page.error().to_string();
      EXPECT_LE(page->records.size(), limit);
      for (const auto& record : page->records) seen.insert(record.idempotency_key);
      if (page->next_cursor.empty()) break;
      options.cursor = page->next_cursor;
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kKeys)) << "page size " << limit;
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), static_cast<std::size_t>(kKeys))
        << "page size " << limit;
  }
}

}  // namespace

namespace {

// wait_settled() wakes on the PUBLISH the finish script sends for a record a
// waiter flagged, not on a poll: it returns the completed record well before
// its one-second safety poll, and Redis counts exactly one PUBLISH.
TEST(RedisWaitSettled, WakesOnCompletionNotOnAPoll) {
  if (redis() == nullptr) GTEST_SKIP() << "no server";
  auto store = open_store();
  ASSERT_TRUE(store);
  const std::string key = "idempotency:events:settle-complete";
  const idem::ClaimOutcome owner = store->claim(claim_req(key)).value();
  ASSERT_TRUE(owner.acquired());
  const std::uint64_t publishes = redis()->stat_calls("publish");
  using Clock = std::chrono::steady_clock;
  Clock::time_point completed_at{};
  std::thread finisher([&] {
    // Early, so that the waiter's safety poll (one second after its read)
    // would come about 900 ms after the completion.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    completed_at = Clock::now();
    ASSERT_TRUE(store->complete({.key = key, .token = owner.token, .result = "done"}).ok());
  });
  auto settled = store->wait_settled(key, std::chrono::seconds(10));
  const auto woke_at = Clock::now();
  finisher.join();
  ASSERT_TRUE(settled.ok()) << settled.error().to_string();
  ASSERT_TRUE(settled->has_value());
  EXPECT_EQ((*settled)->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ((*settled)->result, "done");
  const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(woke_at - completed_at);
  std::cout << "[ INFO     ] the waiter woke " << late.count() << " ms after the completion\n";
  EXPECT_LT(late, std::chrono::milliseconds(600)) << "woken by the safety poll, not by the completion";
  EXPECT_EQ(redis()->stat_calls("publish") - publishes, 1u);
  // A record nobody waits for is finished without a PUBLISH.
  const std::string quiet = "idempotency:events:settle-quiet";
  const idem::ClaimOutcome q = store->claim(claim_req(quiet)).value();
  ASSERT_TRUE(store->complete({.key = quiet, .token = q.token, .result = "r"}).ok());
  EXPECT_EQ(redis()->stat_calls("publish") - publishes, 1u);
}

// What no PUBLISH announces is still seen: the lease running out (the owner
// died), and the key removed; and a settled record returns at once.
TEST(RedisWaitSettled, SeesAnExpiredLeaseARemovalAndSettledRecords) {
  if (redis() == nullptr) GTEST_SKIP() << "no server";
  auto store = open_store();
  ASSERT_TRUE(store);
  using Clock = std::chrono::steady_clock;
  const std::string crashed = "idempotency:events:settle-crashed";
  idem::ClaimRequest r = claim_req(crashed);
  r.lease = std::chrono::milliseconds(400);
  ASSERT_TRUE(store->claim(r).value().acquired());
  auto start = Clock::now();
  auto rec = store->wait_settled(crashed, std::chrono::seconds(10));
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->status, idem::ProcessingStatus::kProcessing);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3)) << "the waiter must wake when the lease runs out";
  // A claim right after the waiter saw the lease end takes the key over: the
  // client's estimate of the server clock is a lower bound and may still read
  // the lease as live, so the claim must let the server decide.
  for (int i = 0; i < 20; ++i) {
    const std::string key = crashed + "-" + std::to_string(i);
    idem::ClaimRequest again = claim_req(key);
    again.lease = std::chrono::milliseconds(20);
    ASSERT_TRUE(store->claim(again).value().acquired());
    ASSERT_TRUE(store->wait_settled(key, std::chrono::seconds(10)).ok());
    const idem::ClaimOutcome takeover = store->claim(again).value();
    EXPECT_TRUE(takeover.acquired()) << key << ": " << idem::to_string(takeover.status);
  }

  const std::string removed = "idempotency:events:settle-removed";
  ASSERT_TRUE(store->claim(claim_req(removed)).value().acquired());
  std::thread remover([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(store->remove(removed).value());
  });
  start = Clock::now();
  rec = store->wait_settled(removed, std::chrono::seconds(10));
  remover.join();
  ASSERT_TRUE(rec.ok());
  EXPECT_FALSE(rec->has_value());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));

  // Already settled, or absent: no waiting at all; a timeout is honoured.
  EXPECT_FALSE(store->wait_settled("idempotency:events:settle-absent", std::chrono::seconds(5))->has_value());
  const std::string busy = "idempotency:events:settle-busy";
  ASSERT_TRUE(store->claim(claim_req(busy)).value().acquired());
  start = Clock::now();
  rec = store->wait_settled(busy, std::chrono::milliseconds(300));
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->status, idem::ProcessingStatus::kProcessing);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(290));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

}  // namespace

namespace {

// rediss:// to a plain port: the handshake gets no answer (Redis reads the
// ClientHello as the start of an inline command); the error says so, and
// that the port may not speak TLS, instead of a bare command timeout.
TEST(RedisStoreUrl, TlsToAPlainPortSaysThePortMayNotSpeakTls) {
  if (redis() == nullptr) GTEST_SKIP() << "no server";
  auto store = idem::RedisStore::open("rediss://127.0.0.1:" + std::to_string(redis()->port()) +
                                      "?verify=0&connect_timeout_ms=300&retries=1");
  ASSERT_TRUE(store.ok());
  idem::Status st = (*store)->ping();
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.error().retryable()) << st.error().to_string();
  EXPECT_NE(st.error().message().find("may not speak TLS"), std::string::npos) << st.error().to_string();
}

}  // namespace
