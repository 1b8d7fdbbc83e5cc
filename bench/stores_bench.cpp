// File: bench/stores_bench.cpp
//
// Throughput of the embedded stores, and of the limit they are measured
// against: raw libsqlite3 running the very same statements (sql.h) on the
// same schema with the same pragmas, so that "SqliteStore / raw" is the cost
// of the store layer itself (pool, clock, Result, decoding), nothing else.
//
//   idem_bench_stores --benchmark_filter=Memory
//   idem_bench_stores --benchmark_format=json > stores.json
//
// "New event" = claim of a never-seen key + complete. "Duplicate" = claim of
// a COMPLETED key (returns the cached record).
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.h"
#include "idem/stores/memory.h"
#include "idem/stores/sqlite.h"

namespace {

using namespace std::chrono_literals;
using idem_bench::KeyMaker;
using idem_bench::KeyMakerRef;
using idem_bench::kResult;
using idem_bench::RawDb;
using idem_bench::ScratchDb;

std::atomic<std::uint64_t> g_run{0};

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = "evt";
  r.event_type = "order.created";
  r.lease = 30s;
  r.ttl = 24h;
  return r;
}

// ---------------------------------------------------------------------------
// MemoryStore

std::shared_ptr<idem::Store> g_memory;

void memory_setup(const benchmark::State&) {
  g_memory = idem::MemoryStore::create();
  ++g_run;
}
void memory_teardown(const benchmark::State&) { g_memory.reset(); }

void BM_MemoryNewEvent(benchmark::State& state) {
  KeyMaker keys(g_run.load(), state.thread_index());
  idem_bench::run_store_new_events(state, *g_memory, keys);
}
BENCHMARK(BM_MemoryNewEvent)->Setup(memory_setup)->Teardown(memory_teardown)->ThreadRange(1, 8)->UseRealTime();

// Steady state: records live 100 ms of a ManualClock that advances 1 ms per
// (live / 100) events, so about `live` records (the argument) stay live and
// the amortized sweep reclaims the rest as it goes: the footprint of a
// service whose records expire, instead of an ever-growing table. The
// argument shows how throughput depends on the working set (cache misses).
std::shared_ptr<idem::ManualClock> g_manual;

void memory_steady_setup(const benchmark::State&) {
  g_manual = std::make_shared<idem::ManualClock>();
  idem::MemoryStoreOptions o;
  o.clock = g_manual;
  g_memory = idem::MemoryStore::create(o);
  ++g_run;
}

void BM_MemoryNewEventSteady(benchmark::State& state) {
  idem::Store& store = *g_memory;
  KeyMaker keys(g_run.load(), state.thread_index());
  const auto per_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, state.range(0) / 100));
  std::uint64_t n = 0;
  for (auto _ : state) {
    const std::string_view key = keys.next();
    idem::ClaimRequest r = claim_req(key);
    r.lease = 50ms;
    r.ttl = 100ms;
    idem::Result<idem::ClaimOutcome> out = store.claim(r);
    if (!out || !out->acquired()) {
      state.SkipWithError("claim did not acquire");
      break;
    }
    idem::CompleteRequest done;
    done.key = key;
    done.token = out->token;
    done.result = kResult;
    done.ttl = 100ms;
    if (!store.complete(done)) state.SkipWithError("complete failed");
    if (++n % per_ms == 0) g_manual->advance(1ms);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["live_records"] = static_cast<double>(store.stats()->completed);
}
BENCHMARK(BM_MemoryNewEventSteady)
    ->Setup(memory_steady_setup)
    ->Teardown(memory_teardown)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->UseRealTime();

void BM_MemoryDuplicate(benchmark::State& state) {
  idem::Store& store = *g_memory;
  // 1,000 completed keys, claimed again round-robin.
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) keys.push_back("idempotency:events:dup-" + std::to_string(i));
  if (state.thread_index() == 0) {
    for (const std::string& k : keys) {
      idem::Result<idem::ClaimOutcome> out = store.claim(claim_req(k));
      if (out && out->acquired()) {
        idem::CompleteRequest done;
        done.key = k;
        done.token = out->token;
        done.result = kResult;
        (void)store.complete(done);
      }
    }
  }
  std::size_t i = 0;
  for (auto _ : state) {
    idem::Result<idem::ClaimOutcome> out = store.claim(claim_req(keys[i++ % keys.size()]));
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MemoryDuplicate)->Setup(memory_setup)->Teardown(memory_teardown)->Threads(1);

// ---------------------------------------------------------------------------
// SqliteStore

std::unique_ptr<ScratchDb> g_db;
std::shared_ptr<idem::Store> g_sqlite;

void sqlite_setup(const benchmark::State&) {
  g_db = std::make_unique<ScratchDb>();
  idem::SqliteStoreOptions o;
  o.path = g_db->path;
  g_sqlite = idem::SqliteStore::create(o).value();
  ++g_run;
}
void sqlite_teardown(const benchmark::State&) {
  g_sqlite.reset();
  g_db.reset();
}

void BM_SqliteNewEvent(benchmark::State& state) {
  KeyMaker keys(g_run.load(), state.thread_index());
  idem_bench::run_store_new_events(state, *g_sqlite, keys);
}
BENCHMARK(BM_SqliteNewEvent)->Setup(sqlite_setup)->Teardown(sqlite_teardown)->UseRealTime();

void BM_SqliteDuplicate(benchmark::State& state) {
  idem::Store& store = *g_sqlite;
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) keys.push_back("idempotency:events:dup-" + std::to_string(i));
  for (const std::string& k : keys) {
    idem::Result<idem::ClaimOutcome> out = store.claim(claim_req(k));
    if (out && out->acquired()) {
      idem::CompleteRequest done;
      done.key = k;
      done.token = out->token;
      done.result = kResult;
      (void)store.complete(done);
    }
  }
  std::size_t i = 0;
  for (auto _ : state) {
    idem::Result<idem::ClaimOutcome> out = store.claim(claim_req(keys[i++ % keys.size()]));
    if (!out || out->status != idem::ClaimStatus::kCompleted) {
      state.SkipWithError("not a completed duplicate");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SqliteDuplicate)->Setup(sqlite_setup)->Teardown(sqlite_teardown)->UseRealTime();

// 100 new keys per iteration: one claim_many (one transaction) versus 100
// claim() calls (100 transactions). Items = keys claimed.
void BM_SqliteClaimManyBatch100(benchmark::State& state) {
  idem::Store& store = *g_sqlite;
  KeyMaker keys(g_run.load(), 0);
  std::vector<std::string> storage(100);
  std::vector<idem::ClaimRequest> batch(100);
  for (auto _ : state) {
    for (std::size_t i = 0; i < 100; ++i) {
      storage[i] = keys.next();
      batch[i] = claim_req(storage[i]);
    }
    idem::Result<std::vector<idem::ClaimOutcome>> out = store.claim_many(batch);
    if (!out || !(*out)[99].acquired()) {
      state.SkipWithError("claim_many failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_SqliteClaimManyBatch100)->Setup(sqlite_setup)->Teardown(sqlite_teardown)->UseRealTime();

void BM_SqliteClaimOneByOne100(benchmark::State& state) {
  idem::Store& store = *g_sqlite;
  KeyMaker keys(g_run.load(), 0);
  for (auto _ : state) {
    for (int i = 0; i < 100; ++i) {
      idem::Result<idem::ClaimOutcome> out = store.claim(claim_req(keys.next()));
      if (!out || !out->acquired()) state.SkipWithError("claim failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_SqliteClaimOneByOne100)->Setup(sqlite_setup)->Teardown(sqlite_teardown)->UseRealTime();

std::unique_ptr<RawDb> g_raw;

void raw_setup(const benchmark::State&) {
  g_db = std::make_unique<ScratchDb>();
  g_raw = std::make_unique<RawDb>(g_db->path);
  ++g_run;
}
void raw_teardown(const benchmark::State&) {
  g_raw.reset();
  g_db.reset();
}

void BM_RawSqliteNewEvent(benchmark::State& state) {
  RawDb& raw = *g_raw;
  KeyMaker keys(g_run.load(), 0);
  idem_bench::run_raw_new_events(state, raw, keys);
}
BENCHMARK(BM_RawSqliteNewEvent)->Setup(raw_setup)->Teardown(raw_teardown)->UseRealTime();

void BM_RawSqliteDuplicate(benchmark::State& state) {
  RawDb& raw = *g_raw;
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) keys.push_back("idempotency:events:dup-" + std::to_string(i));
  for (const std::string& k : keys) raw.run_complete(k, raw.run_claim(k));
  std::size_t i = 0;
  for (auto _ : state) {
    if (raw.run_claim(keys[i++ % keys.size()]) >= 0) {
      state.SkipWithError("acquired a duplicate");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawSqliteDuplicate)->Setup(raw_setup)->Teardown(raw_teardown)->UseRealTime();

// What claim_many() does for 100 keys: one transaction, chunks of 64+16+16+4.
void BM_RawSqliteBatch100(benchmark::State& state) {
  RawDb& raw = *g_raw;
  KeyMaker keys(g_run.load(), 0);
  KeyMakerRef next = [&keys] { return keys.next(); };
  for (auto _ : state) {
    raw.step_once(raw.begin);
    if (sqlite3_step(raw.read_floor) != SQLITE_ROW) throw std::runtime_error("floor");
    raw.floor = sqlite3_column_int64(raw.read_floor, 0);
    sqlite3_reset(raw.read_floor);
    int got = raw.run_claim_rows(raw.claim64, 64, next);
    got += raw.run_claim_rows(raw.claim16, 16, next);
    got += raw.run_claim_rows(raw.claim16, 16, next);
    got += raw.run_claim_rows(raw.claim4, 4, next);
    raw.step_once(raw.commit);
    if (got != 100) {
      state.SkipWithError("not acquired");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_RawSqliteBatch100)->Setup(raw_setup)->Teardown(raw_teardown)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
