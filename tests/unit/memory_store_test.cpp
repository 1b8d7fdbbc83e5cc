// File: tests/unit/memory_store_test.cpp
//
// MemoryStore specifics the contract suite cannot see: the capacity bound,
// lazy and amortized expiry, sweep, URL parsing. Time is a ManualClock.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/clock.h"
#include "idem/stores/memory.h"

namespace idem {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

ClaimRequest req(std::string_view key, milliseconds lease = 30s, milliseconds ttl = 3600s) {
  ClaimRequest r;
  r.key = key;
  r.event_id = "e";
  r.event_type = "t";
  r.lease = lease;
  r.ttl = ttl;
  return r;
}

CompleteRequest done(std::string_view key, Token token, milliseconds ttl = 3600s) {
  CompleteRequest r;
  r.key = key;
  r.token = token;
  r.result = "ok";
  r.ttl = ttl;
  return r;
}

class MemoryStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> make(std::size_t max_records = 0, std::size_t shards = 64) {
    MemoryStoreOptions o;
    o.clock = clock_;
    o.max_records = max_records;
    o.shards = shards;
    return MemoryStore::create(o);
  }
};

TEST_F(MemoryStoreTest, OpenParsesUrls) {
  for (const char* good : {"memory://", "memory:///", "memory://?max_records=10", "memory://?shards=3&max_records=0",
                           "memory://?max_records=5&"}) {
    Result<std::shared_ptr<Store>> s = MemoryStore::open(good);
    ASSERT_TRUE(s.ok()) << good << ": " << s.error().to_string();
    EXPECT_EQ((*s)->kind(), "memory");
  }
  struct Bad {
    const char* url;
    const char* mentions;
  };
  for (const Bad& bad : {Bad{"memroy://", "scheme"}, Bad{"memory://host/path", "no path"},
                         Bad{"memory://a:b", "letters"}, Bad{"memory://?max_records=abc", "max_records"},
                         Bad{"memory://?max_records=-1", "max_records"}, Bad{"memory://?max_records", "no value"},
                         Bad{"memory://?shards=0", "shards"}, Bad{"memory://?colour=blue", "colour"}}) {
    Result<std::shared_ptr<Store>> s = MemoryStore::open(bad.url);
    ASSERT_FALSE(s.ok()) << bad.url;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidConfiguration);
    EXPECT_NE(s.error().message().find(bad.mentions), std::string::npos) << s.error().message();
  }
}

// Issue 7 item 9: a plain memory:// is private, a named one is shared.
TEST_F(MemoryStoreTest, PlainUrlsArePrivateAndNamedUrlsAreShared) {
  auto a = MemoryStore::open("memory://").value();
  auto b = MemoryStore::open("memory://").value();
  EXPECT_NE(a, b);
  auto orders = MemoryStore::open("memory://orders-test").value();
  auto again = MemoryStore::open("memory://orders-test").value();
  EXPECT_EQ(orders, again);
  auto claim = orders->claim(req("k"));
  ASSERT_TRUE(claim.ok() && claim->acquired());
  auto seen = again->get("k");
  ASSERT_TRUE(seen.ok() && seen->has_value()) << "both openers must see one store";
  EXPECT_NE(MemoryStore::open("memory://other-test").value(), orders);

  // Existing names open even when creating is not allowed; unknown ones fail.
  auto existing = MemoryStore::open("memory://orders-test", {.create_if_missing = false});
  ASSERT_TRUE(existing.ok()) << existing.error().to_string();
  EXPECT_EQ(*existing, orders);
  auto missing = MemoryStore::open("memory://nobody-test", {.create_if_missing = false});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(MemoryStore::open("memory://nobody-test", {.create_if_missing = false}).ok()) << "nothing was created";

  // Other parameters for an open name are refused rather than ignored.
  auto other_params = MemoryStore::open("memory://orders-test?max_records=5");
  ASSERT_FALSE(other_params.ok());
  EXPECT_EQ(other_params.error().code(), ErrorCode::kInvalidConfiguration);

  // Once nobody holds it, the name starts afresh.
  orders.reset();
  again.reset();
  existing = Error(ErrorCode::kInternal, "released");
  auto fresh = MemoryStore::open("memory://orders-test?max_records=5");
  ASSERT_TRUE(fresh.ok()) << fresh.error().to_string();
  EXPECT_FALSE((*fresh)->get("k")->has_value());
}

// Issue 7 item 7: a waiter is woken by the verdict, not by a poll. The poll
// interval is set far beyond the test's timeout, so only a wake-up can make
// the waiter see the completion.
TEST_F(MemoryStoreTest, WaitSettledWakesOnCompleteFailAndRemove) {
  auto store = MemoryStore::create({.wait_poll_interval = std::chrono::hours(1)});
  for (const char* how : {"complete", "fail", "remove"}) {
    const std::string key = std::string("wake-") + how;
    auto claim = store->claim(req(key, 60s));
    ASSERT_TRUE(claim.ok() && claim->acquired());
    std::atomic<bool> waiting{false};
    Result<std::optional<IdempotencyRecord>> seen = Error(ErrorCode::kInternal, "not run");
    std::chrono::steady_clock::time_point woke;
    std::thread waiter([&] {
      waiting = true;
      seen = store->wait_settled(key, 20s);
      woke = std::chrono::steady_clock::now();
    });
    while (!waiting) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);  // let it fall asleep (correct either way)
    const auto settled_at = std::chrono::steady_clock::now();
    if (std::string_view(how) == "complete") {
      ASSERT_TRUE(store->complete(done(key, claim->token)).ok());
    } else if (std::string_view(how) == "fail") {
      FailRequest f;
      f.key = key;
      f.token = claim->token;
      f.error = "boom";
      ASSERT_TRUE(store->fail(f).ok());
    } else {
      ASSERT_TRUE(store->remove(key).ok());
    }
    waiter.join();
    ASSERT_TRUE(seen.ok()) << seen.error().to_string();
    if (std::string_view(how) == "remove") {
      EXPECT_FALSE(seen->has_value());
    } else {
      ASSERT_TRUE(seen->has_value());
      EXPECT_NE((*seen)->status, ProcessingStatus::kProcessing) << how;
    }
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(woke - settled_at);
    // Far below both the 20 s timeout and the old 200 ms poll.
    EXPECT_LT(latency, 10s) << how;
    RecordProperty(std::string("wake_latency_us_") + how, std::to_string(latency.count()));
  }
}

TEST_F(MemoryStoreTest, WaitSettledEndsWhenTheLeaseRunsOutOrTheTimeoutPasses) {
  auto store = make();
  auto claim = store->claim(req("k", 30s));
  ASSERT_TRUE(claim.ok());
  // Timeout: the record as last seen, still PROCESSING.
  auto timed_out = store->wait_settled("k", 5ms);
  ASSERT_TRUE(timed_out.ok() && timed_out->has_value());
  EXPECT_EQ((*timed_out)->status, ProcessingStatus::kProcessing);
  EXPECT_TRUE(store->wait_settled("k", milliseconds(-1)).ok()) << "a negative timeout counts as 0";
  // A lease that runs out on a jumping clock is noticed by the re-check.
  std::thread mover([&] {
    std::this_thread::sleep_for(20ms);
    clock_->advance(31s);
  });
  auto expired = store->wait_settled("k", 20s);
  mover.join();
  ASSERT_TRUE(expired.ok() && expired->has_value());
  EXPECT_FALSE((*expired)->lease_valid(clock_->now()));
}

TEST_F(MemoryStoreTest, OpenedBoundIsEnforced) {
  Result<std::shared_ptr<Store>> s = MemoryStore::open("memory://?max_records=2");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->claim(req("a"))->acquired());
  EXPECT_TRUE((*s)->claim(req("b"))->acquired());
  Result<ClaimOutcome> c = (*s)->claim(req("c"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kResourceExhausted);
}

TEST_F(MemoryStoreTest, CapacityNeverEvictsLiveRecords) {
  auto store = make(3, 1);
  std::vector<Token> tokens;
  for (const char* k : {"a", "b", "c"}) {
    Result<ClaimOutcome> out = store->claim(req(k));
    ASSERT_TRUE(out.ok());
    tokens.push_back(out->token);
  }
  EXPECT_TRUE(store->complete(done("a", tokens[0])).ok());
  Result<ClaimOutcome> full = store->claim(req("d"));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(full.error().message().find("max_records"), std::string::npos);
  for (const char* k : {"a", "b", "c"}) EXPECT_TRUE(store->get(k)->has_value()) << k;
  // Duplicates of stored keys still answer when full.
  EXPECT_EQ(store->claim(req("a"))->status, ClaimStatus::kCompleted);
  EXPECT_EQ(store->claim(req("b"))->status, ClaimStatus::kInProgress);
  // Removing one makes room.
  EXPECT_TRUE(*store->remove("c"));
  EXPECT_TRUE(store->claim(req("d"))->acquired());
}

TEST_F(MemoryStoreTest, CapacityDropsExpiredFirst) {
  auto store = make(3, 4);
  for (const char* k : {"a", "b", "c"}) {
    Result<ClaimOutcome> out = store->claim(req(k));
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE(store->complete(done(k, out->token, k[0] == 'b' ? 1s : 3600s)).ok());
  }
  EXPECT_FALSE(store->claim(req("d")).ok());
  clock_->advance(2s);  // "b" expires
  Result<ClaimOutcome> d = store->claim(req("d"));
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_TRUE(d->acquired());
  EXPECT_FALSE(store->get("b")->has_value());
  EXPECT_TRUE(store->get("a")->has_value());
  EXPECT_TRUE(store->get("c")->has_value());
}

TEST_F(MemoryStoreTest, CapacityIsExactUnderConcurrency) {
  auto store = make(100, 8);
  std::atomic<int> acquired{0};
  std::atomic<int> exhausted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string k = "t" + std::to_string(t) + "-" + std::to_string(i);
        Result<ClaimOutcome> out = store->claim(req(k));
        if (out.ok() && out->acquired()) {
          acquired.fetch_add(1);
        } else if (!out.ok() && out.error().code() == ErrorCode::kResourceExhausted) {
          exhausted.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(acquired.load(), 100);
  EXPECT_EQ(exhausted.load(), 300);
}

TEST_F(MemoryStoreTest, LazyExpiryHidesExpiredRecords) {
  auto store = make();
  Result<ClaimOutcome> out = store->claim(req("k"));
  ASSERT_TRUE(store->complete(done("k", out->token, 10s)).ok());
  clock_->advance(9999ms);
  EXPECT_TRUE(store->get("k")->has_value());
  EXPECT_EQ(store->stats()->completed, 1u);
  clock_->advance(1ms);  // expires_at == now: gone
  EXPECT_FALSE(store->get("k")->has_value());
  EXPECT_EQ(store->stats()->completed, 0u);
  EXPECT_FALSE(*store->remove("k"));
  EXPECT_TRUE(store->scan({})->records.empty());
}

TEST_F(MemoryStoreTest, LeaseBoundaryAndNeverExpiringUnderLease) {
  auto store = make();
  Result<ClaimOutcome> out = store->claim(req("k", 30s, 3600s));
  ASSERT_TRUE(out->acquired());
  Result<ClaimOutcome> short_ttl = store->claim(req("short-ttl", 30s, 1s));
  ASSERT_TRUE(short_ttl->acquired());
  clock_->advance(29999ms);
  EXPECT_TRUE(store->get("short-ttl")->has_value()) << "a TTL shorter than the lease waits for the lease";
  EXPECT_EQ(store->claim(req("k"))->status, ClaimStatus::kInProgress);
  EXPECT_EQ(store->sweep()->expired_removed, 0u);
  clock_->advance(1ms);  // lease_expires_at == now: the lease is over
  Result<ClaimOutcome> take = store->claim(req("k"));
  ASSERT_TRUE(take->acquired());
  EXPECT_EQ(take->acquire_kind, AcquireKind::kTakeover);
  EXPECT_EQ(take->attempt, 2u);
  EXPECT_GT(take->token, out->token);
}

TEST_F(MemoryStoreTest, OwnerLosesExpiredRecord) {
  auto store = make();
  Result<ClaimOutcome> out = store->claim(req("k", 1s, 1s));
  clock_->advance(2s);
  Status s = store->complete(done("k", out->token));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kLeaseLost);
  EXPECT_NE(s.error().message().find("no longer exists"), std::string::npos) << s.error().message();
}

TEST_F(MemoryStoreTest, SweepRemovesExactlyTheExpired) {
  auto store = make(0, 4);
  for (int i = 0; i < 15; ++i) {
    const std::string k = "k" + std::to_string(i);
    Result<ClaimOutcome> out = store->claim(req(k, 30s, 3600s));
    if (i < 10) {
      ASSERT_TRUE(store->complete(done(k, out->token, 1s)).ok());
    }
  }
  clock_->advance(2s);
  EXPECT_EQ(store->sweep()->expired_removed, 10u);
  EXPECT_EQ(store->sweep()->expired_removed, 0u);
  EXPECT_EQ(store->stats()->processing, 5u);
}

TEST_F(MemoryStoreTest, AmortizedSweepReclaimsWithoutExplicitSweep) {
  auto store = make(0, 1);
  for (int i = 0; i < 1000; ++i) {
    const std::string k = "old" + std::to_string(i);
    Result<ClaimOutcome> out = store->claim(req(k));
    ASSERT_TRUE(store->complete(done(k, out->token, 1s)).ok());
  }
  clock_->advance(2s);
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(store->claim(req("new" + std::to_string(i)))->acquired());
  // Inserting visited every bucket at least once: little expired is left.
  EXPECT_LT(store->sweep()->expired_removed, 100u);
}

TEST_F(MemoryStoreTest, TokensAreUniqueStoreWideAndGrowPerKey) {
  auto store = make(0, 8);
  std::set<Token> tokens;
  for (int i = 0; i < 200; ++i) {
    Result<ClaimOutcome> out = store->claim(req("k" + std::to_string(i)));
    EXPECT_TRUE(tokens.insert(out->token).second);
  }
  Token last = 0;
  for (int i = 0; i < 20; ++i) {
    Result<ClaimOutcome> out = store->claim(req("again", 1s, 1s));
    ASSERT_TRUE(out->acquired());
    EXPECT_GT(out->token, last);
    last = out->token;
    if (i % 2 == 0) {
      ASSERT_TRUE(*store->remove("again"));
    } else {
      clock_->advance(2s);
    }
  }
}

TEST_F(MemoryStoreTest, StatsReportOldestProcessingAndBytes) {
  auto store = make();
  ASSERT_TRUE(store->claim(req("first"))->acquired());
  clock_->advance(1s);
  ASSERT_TRUE(store->claim(req("second"))->acquired());
  Result<StoreStats> s = store->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->processing, 2u);
  ASSERT_TRUE(s->oldest_processing.has_value());
  EXPECT_EQ(s->oldest_processing->idempotency_key, "first");
  ASSERT_TRUE(s->bytes.has_value());
  EXPECT_GT(*s->bytes, 0u);
}

TEST_F(MemoryStoreTest, ScanIsSortedByKey) {
  auto store = make(0, 16);
  for (int i = 99; i >= 0; --i) ASSERT_TRUE(store->claim(req("k" + std::to_string(1000 + i)))->acquired());
  ScanOptions opts;
  opts.limit = 30;
  std::string previous;
  std::size_t seen = 0;
  for (;;) {
    Result<ScanPage> page = store->scan(opts);
    for (const auto& r : page->records) {
      EXPECT_LT(previous, r.idempotency_key);
      previous = r.idempotency_key;
      ++seen;
    }
    if (page->next_cursor.empty()) break;
    opts.cursor = page->next_cursor;
  }
  EXPECT_EQ(seen, 100u);
}

TEST_F(MemoryStoreTest, RandomOperationsMatchAModel) {
  // Many inserts, removals and expiries on few shards exercise the table's
  // growth and its gap-closing deletion; a std::map is the reference.
  auto store = make(0, 2);
  std::map<std::string, Timestamp> model;  // key -> expires_at
  std::mt19937 rng(12345);
  for (int step = 0; step < 40000; ++step) {
    const std::string k = "k" + std::to_string(rng() % 700);
    const Timestamp now = clock_->now();
    auto it = model.find(k);
    if (it != model.end() && it->second <= now) {
      model.erase(it);
      it = model.end();
    }
    switch (rng() % 6) {
      case 0:
      case 1:
      case 2: {
        const auto ttl = milliseconds(1 + rng() % 50);
        Result<ClaimOutcome> out = store->claim(req(k, ttl, ttl));  // lease == ttl: no takeovers
        ASSERT_TRUE(out.ok());
        ASSERT_EQ(out->acquired(), it == model.end()) << k << " at step " << step;
        if (out->acquired()) model[k] = now + ttl;
        break;
      }
      case 3: {
        Result<bool> removed = store->remove(k);
        ASSERT_EQ(*removed, it != model.end()) << k << " at step " << step;
        if (it != model.end()) model.erase(it);
        break;
      }
      case 4: ASSERT_EQ(store->get(k)->has_value(), it != model.end()) << k << " at step " << step; break;
      default:
        clock_->advance(milliseconds(rng() % 3));
        if (rng() % 50 == 0) (void)store->sweep();
        break;
    }
  }
  std::erase_if(model, [&](const auto& kv) { return kv.second <= clock_->now(); });
  ScanOptions all;
  all.limit = 10000;
  EXPECT_EQ(store->scan(all)->records.size(), model.size());
}

}  // namespace
}  // namespace idem
