// The contract suite on a standalone redis-server, through the synchronous
// and the asynchronous API, and the client under concurrency: synchronous
// callers (driving connections themselves or through the I/O thread), an
// asynchronous caller keeping many operations in flight, waiters, and
// connections killed by the server meanwhile. Labelled `conformance`, so the
// sanitizer stages (ASan+UBSan, TSan) run it too.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "conformance/async_as_sync.h"
#include "conformance/store_contract.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using namespace std::chrono_literals;
using idem::test::RedisServer;

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new idem::test::StandaloneRedis);
RedisServer* redis() { return idem::test::StandaloneRedis::server(); }

std::shared_ptr<idem::Store> open_store(const std::string& query = "") {
  auto store = idem::RedisStore::open(redis()->url() + "/0" + query);
  EXPECT_TRUE(store.ok()) << store.error().to_string();
  return store.ok() ? *store : nullptr;
}

StoreFixture redis_fixture() {
  return StoreFixture{"Redis", [] {
                        // A fresh database per test, so that stats() deltas are exact.
                        redis()->command({"FLUSHALL"});
                        return open_store();
                      }};
}

StoreFixture redis_fixture_async() {
  return StoreFixture{"RedisAsync", [] {
                        redis()->command({"FLUSHALL"});
                        return idem::conformance::async_as_sync(open_store());
                      }};
}

// layout=json: records the original Python module can read (json_layout.h).
StoreFixture redis_fixture_json() {
  return StoreFixture{"RedisJson", [] {
                        redis()->command({"FLUSHALL"});
                        return open_store("?layout=json");
                      }};
}

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = key.substr(key.rfind('-') + 1);
  r.event_type = "t";
  return r;
}

bool is_outage(const idem::Error& e) {
  return e.code() == idem::ErrorCode::kUnavailable || e.code() == idem::ErrorCode::kTimeout;
}

// Everything at once on one store of two connections: 8 synchronous threads
// (claim + complete, get, claim_many), one asynchronous chain of 32 events in
// flight, a waiter, and the server killing every client connection now and
// then. Every operation ends once (callback count), with a success or a typed
// outage error, and nothing is left waiting.
TEST(RedisClientConcurrency, SyncAsyncWaitersAndKilledConnections) {
  auto store = open_store("?pool_size=2&retries=3&command_timeout_ms=2000&breaker_threshold=0");
  ASSERT_TRUE(store);
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0};
  std::mutex mutex;
  std::string first_unexpected;
  auto check = [&](const idem::Error& e) {
    if (is_outage(e)) return;
    if (unexpected.fetch_add(1) == 0) {
      std::lock_guard lock(mutex);
      first_unexpected = e.to_string();
    }
  };
  std::atomic<std::uint64_t> sync_done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = "idempotency:events:s" + std::to_string(t) + "-" + std::to_string(i);
        if (i % 10 == 9) {
          std::vector<std::string> keys;
          std::vector<idem::ClaimRequest> batch;
          for (int j = 0; j < 20; ++j) keys.push_back(key + "-" + std::to_string(j));
          for (const std::string& k : keys) batch.push_back(claim_req(k));
          auto outs = store->claim_many(batch);
          if (!outs) check(outs.error());
          sync_done.fetch_add(1);
          continue;
        }
        auto out = store->claim(claim_req(key));
        if (!out) {
          check(out.error());
        } else if (out->acquired()) {
          idem::Status st = store->complete({.key = key, .token = out->token, .result = "r"});
          if (!st) check(st.error());
          auto got = store->get(key);
          if (!got) check(got.error());
        }
        sync_done.fetch_add(1);
      }
    });
  }

  // The asynchronous chain: each callback (on the I/O thread) starts the next.
  struct Async {
    std::atomic<std::uint64_t> started{0};
    std::atomic<std::uint64_t> finished{0};
    std::mutex mutex;
    std::condition_variable idle;
  } async;
  std::function<void(std::uint64_t)> next = [&](std::uint64_t chain) {
    if (stop.load()) return;
    const std::uint64_t n = async.started.fetch_add(1);
    const std::string key = "idempotency:events:a" + std::to_string(chain) + "-" + std::to_string(n);
    store->claim_async(claim_req(key), [&, chain, key](idem::Result<idem::ClaimOutcome> out) {
      // By value: it outlives this callback (the completion's callback runs it).
      auto done = [&async, &next, chain] {
        async.finished.fetch_add(1);
        {
          std::lock_guard lock(async.mutex);
          async.idle.notify_all();
        }
        next(chain);
      };
      if (!out || !out->acquired()) {
        if (!out) check(out.error());
        done();
        return;
      }
      store->complete_async({.key = key, .token = out->token, .result = "r"}, [&check, done](idem::Status st) {
        if (!st) check(st.error());
        done();
      });
    });
  };
  for (std::uint64_t chain = 0; chain < 32; ++chain) next(chain);

  // A waiter on keys that another thread completes.
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "idempotency:events:w-" + std::to_string(i);
      auto owner = store->claim(claim_req(key));
      if (!owner || !owner->acquired()) continue;
      std::thread finisher([&, token = owner->token] {
        std::this_thread::sleep_for(5ms);
        (void)store->complete({.key = key, .token = token, .result = "r"});
      });
      auto settled = store->wait_settled(key, 2s);
      if (!settled) check(settled.error());
      finisher.join();
    }
  });

  // The server drops every client connection, a few times.
  for (int round = 0; round < 4; ++round) {
    std::this_thread::sleep_for(300ms);
    redis()->command({"CLIENT", "KILL", "TYPE", "normal"});
  }
  std::this_thread::sleep_for(300ms);
  stop.store(true);
  for (auto& th : threads) th.join();
  {
    std::unique_lock lock(async.mutex);
    ASSERT_TRUE(async.idle.wait_for(lock, 20s, [&] { return async.finished.load() == async.started.load(); }))
        << async.started.load() - async.finished.load() << " asynchronous operations never called back";
  }
  EXPECT_EQ(unexpected.load(), 0) << first_unexpected;
  EXPECT_GT(sync_done.load(), 100u);
  EXPECT_GT(async.finished.load(), 100u);
  std::cout << "[ INFO     ] " << sync_done.load() << " synchronous and " << async.finished.load()
            << " asynchronous events; " << idem::RedisStore::client_stats(*store)->connects << " connects\n";
}

// A synchronous call from inside a completion callback would wait for the
// thread it blocks: refused with kInternal, never a deadlock.
TEST(RedisClientConcurrency, SyncCallInsideACallbackIsRefused) {
  auto store = open_store();
  ASSERT_TRUE(store);
  std::promise<idem::Status> inner;
  store->get_async("idempotency:events:inner",
                   [&](idem::Result<std::optional<idem::IdempotencyRecord>>) { inner.set_value(store->ping()); });
  auto future = inner.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready) << "deadlock";
  idem::Status st = future.get();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), idem::ErrorCode::kInternal);
}

// The last reference to a store dropped inside one of its own callbacks
// (on its I/O thread): destroyed safely elsewhere.
TEST(RedisClientConcurrency, StoreReleasedInsideItsOwnCallback) {
  auto store = open_store();
  ASSERT_TRUE(store);
  std::promise<void> called;
  idem::Store* raw = store.get();
  raw->get_async("idempotency:events:last-ref",
                 [keep = std::move(store), &called](idem::Result<std::optional<idem::IdempotencyRecord>>) mutable {
                   keep.reset();
                   called.set_value();
                 });
  ASSERT_EQ(called.get_future().wait_for(10s), std::future_status::ready);
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(Redis, redis_fixture());
// The same suite through the asynchronous API (each call is *_async + wait).
INSTANTIATE_STORE_CONTRACT(RedisAsync, redis_fixture_async());
// The JSON record layout (layout=json), the same state machine.
INSTANTIATE_STORE_CONTRACT(RedisJson, redis_fixture_json());
