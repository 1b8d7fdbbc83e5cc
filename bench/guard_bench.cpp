// File: bench/guard_bench.cpp
//
// The guard's own cost (issue 8 item 6): IdempotentEventProcessor over the
// embedded stores, next to the limit each is measured against in the same
// run (the store called directly; for SQLite, raw libsqlite3 running the
// store's very statements with the same fingerprint bound).
//
//   BM_GuardMemoryNewEvent/validate:V  process() + mark_completed(), one
//                                      thread, payload check on (1) or off (0)
//   BM_StoreMemoryNewEvent             claim + complete on the store itself
//   BM_PayloadFingerprint, BM_Sha256Hex  the payload check's share
//   BM_GuardMemoryDuplicate            process() of a COMPLETED key
//   BM_GuardSqliteNewEvent             the guard on a SQLite file
//   BM_StoreSqliteNewEvent             the store called directly (no fingerprint)
//   BM_RawSqliteNewEvent               the same SQL, raw, same fingerprint
//   BM_SqliteGuardAgainstRaw           the two taking turns (see there)
//   BM_MemoryGuardAgainstStore         the guard and the memory store taking turns
//   BM_GuardAsync{Memory,Sqlite}/inflight:N
//                                      process_async() with N handlers
//                                      holding their Completion (N claims
//                                      and heartbeats live at once)
//
// Every guard benchmark has no observer and the heartbeat on (the defaults);
// the payload is a canonical 100-byte JSON object, as Envelope::parse()
// leaves it.
//
//   idem_bench_guard --benchmark_repetitions=5 --benchmark_min_time=0.5
//                    --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <charconv>
#include <deque>
#include <memory>
#include <string>

#include "bench_support.h"
#include "idem/core/checker.h"
#include "idem/core/processor.h"
#include "idem/stores/memory.h"
#include "idem/stores/sqlite.h"

namespace {

using namespace std::chrono_literals;
using idem_bench::KeyMaker;
using idem_bench::kResult;
using idem_bench::RawDb;
using idem_bench::ScratchDb;

constexpr std::string_view kPayload =
    R"({"amount":1999,"currency":"EUR","customer":"cus_0123456789","n":12345,"note":"about a hundred bytes"})";

std::uint64_t g_run = 0;

idem::Envelope make_envelope() {
  idem::Envelope envelope;
  envelope.event_type = "order.created";
  envelope.payload = std::string(kPayload);
  return envelope;
}

// Sets a fresh event id without allocating (it fits the string's buffer
// after the first round).
void set_id(idem::Envelope& envelope, std::uint64_t run, std::uint64_t n) {
  char buffer[48];
  char* p = std::to_chars(buffer, buffer + 20, run).ptr;  // 20 digits hold any uint64
  *p++ = '-';
  p = std::to_chars(p, p + 20, n).ptr;
  envelope.event_id.assign(buffer, p);
}

std::unique_ptr<idem::IdempotentEventProcessor> make_processor(std::shared_ptr<idem::Store> store, bool validate) {
  idem::CheckerOptions options;
  options.validate_payload = validate;
  auto checker = std::make_shared<idem::IdempotencyChecker>(std::move(store), options);
  return std::make_unique<idem::IdempotentEventProcessor>(checker, idem::ProcessorOptions{.scope = "bench"});
}

void run_guard_new_events(benchmark::State& state, idem::IdempotentEventProcessor& processor) {
  idem::Envelope envelope = make_envelope();
  const std::uint64_t run = ++g_run;
  std::uint64_t n = 0;
  for (auto _ : state) {
    set_id(envelope, run, n++);
    idem::ProcessingContext ctx = processor.process(envelope);
    if (!ctx.should_process()) {
      state.SkipWithError("not acquired");
      break;
    }
    ctx.mark_completed(kResult);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------
// Memory

void BM_GuardMemoryNewEvent(benchmark::State& state) {
  auto processor = make_processor(idem::MemoryStore::create(), state.range(0) != 0);
  run_guard_new_events(state, *processor);
}
BENCHMARK(BM_GuardMemoryNewEvent)->ArgName("validate")->Arg(0)->Arg(1)->UseRealTime();

void BM_StoreMemoryNewEvent(benchmark::State& state) {
  auto store = idem::MemoryStore::create();
  KeyMaker keys(++g_run, 0);
  idem_bench::run_store_new_events(state, *store, keys);
}
BENCHMARK(BM_StoreMemoryNewEvent)->UseRealTime();

void BM_GuardMemoryDuplicate(benchmark::State& state) {
  auto processor = make_processor(idem::MemoryStore::create(), true);
  idem::Envelope envelope = make_envelope();
  std::vector<idem::Envelope> completed(1000, envelope);
  for (std::size_t i = 0; i < completed.size(); ++i) {
    set_id(completed[i], 0, i);
    processor->process(completed[i]).mark_completed(kResult);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    idem::ProcessingContext ctx = processor->process(completed[i++ % completed.size()]);
    if (ctx.status() != idem::ClaimStatus::kCompleted) {
      state.SkipWithError("not a completed duplicate");
      break;
    }
    benchmark::DoNotOptimize(ctx.cached_result());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GuardMemoryDuplicate)->UseRealTime();

// What the payload check costs per claim: the fingerprint of a canonical
// payload (the fast path), of the same payload written by hand with spaces
// and another key order (parsed and dumped first), and SHA-256 alone.
void BM_PayloadFingerprint(benchmark::State& state) {
  idem::Envelope envelope = make_envelope();
  if (state.range(0) == 1) {
    envelope.payload =
        R"({ "note": "about a hundred bytes", "n": 12345, "customer": "cus_0123456789", "currency": "EUR", )"
        R"("amount": 1999 })";
  }
  for (auto _ : state) benchmark::DoNotOptimize(envelope.payload_fingerprint());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) == 1 ? "hand-written" : "canonical");
}
BENCHMARK(BM_PayloadFingerprint)->ArgName("hand_written")->Arg(0)->Arg(1);

void BM_Sha256Hex(benchmark::State& state) {
  const std::string payload(kPayload);
  for (auto _ : state) benchmark::DoNotOptimize(idem::sha256_hex(payload));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sha256Hex);

// ---------------------------------------------------------------------------
// SQLite, next to raw libsqlite3 in the same run

void BM_GuardSqliteNewEvent(benchmark::State& state) {
  ScratchDb db;
  idem::SqliteStoreOptions options;
  options.path = db.path;
  auto processor = make_processor(idem::SqliteStore::create(options).value(), true);
  run_guard_new_events(state, *processor);
}
BENCHMARK(BM_GuardSqliteNewEvent)->UseRealTime();

void BM_StoreSqliteNewEvent(benchmark::State& state) {
  ScratchDb db;
  idem::SqliteStoreOptions options;
  options.path = db.path;
  auto store = idem::SqliteStore::create(options).value();
  KeyMaker keys(++g_run, 0);
  idem_bench::run_store_new_events(state, *store, keys);
}
BENCHMARK(BM_StoreSqliteNewEvent)->UseRealTime();

void BM_RawSqliteNewEvent(benchmark::State& state) {
  ScratchDb db;
  RawDb raw(db.path);
  raw.fingerprint = "0123456789abcdef0123456789abcdef";  // the guard's length
  KeyMaker keys(++g_run, 0);
  idem_bench::run_raw_new_events(state, raw, keys);
}
BENCHMARK(BM_RawSqliteNewEvent)->UseRealTime();

// The guard and its limit taking turns, 100 new events each: on a shared
// machine the time per event drifts by 2x within seconds (the disk, the
// neighbours), and separate benchmarks then compare the drift, not the
// layers. Counters: guard_per_s and limit_per_s (wall time of each side's
// turns), and guard_over_limit, the ratio the targets are about.
template <typename GuardEvent, typename LimitEvent>
void take_turns(benchmark::State& state, GuardEvent guard_event, LimitEvent limit_event) {
  using Clock = std::chrono::steady_clock;
  Clock::duration guard_time{};
  Clock::duration limit_time{};
  constexpr int kTurn = 100;
  for (auto _ : state) {
    const auto start = Clock::now();
    for (int i = 0; i < kTurn; ++i) guard_event();
    const auto middle = Clock::now();
    for (int i = 0; i < kTurn; ++i) limit_event();
    const auto end = Clock::now();
    guard_time += middle - start;
    limit_time += end - middle;
  }
  const double events = static_cast<double>(state.iterations()) * kTurn;
  const double guard_s = std::chrono::duration<double>(guard_time).count();
  const double limit_s = std::chrono::duration<double>(limit_time).count();
  state.counters["guard_per_s"] = guard_s > 0 ? events / guard_s : 0;
  state.counters["limit_per_s"] = limit_s > 0 ? events / limit_s : 0;
  state.counters["guard_over_limit"] = guard_s > 0 ? limit_s / guard_s : 0;
}

// One new event through the guard, for take_turns().
auto guard_event(benchmark::State& state, idem::IdempotentEventProcessor& processor, idem::Envelope& envelope,
                 std::uint64_t run, std::uint64_t& n) {
  return [&state, &processor, &envelope, run, &n] {
    set_id(envelope, run, n++);
    idem::ProcessingContext ctx = processor.process(envelope);
    if (!ctx.should_process()) state.SkipWithError("not acquired");
    ctx.mark_completed(kResult);
  };
}

// The guard on SQLite against raw libsqlite3 with the same SQL and the same
// fingerprint, on two files of one directory.
void BM_SqliteGuardAgainstRaw(benchmark::State& state) {
  ScratchDb db;
  idem::SqliteStoreOptions options;
  options.path = db.path;
  auto processor = make_processor(idem::SqliteStore::create(options).value(), true);
  RawDb raw((db.dir / "raw.db").string());
  raw.fingerprint = "0123456789abcdef0123456789abcdef";
  KeyMaker keys(++g_run, 0);
  idem::Envelope envelope = make_envelope();
  std::uint64_t n = 0;
  take_turns(state, guard_event(state, *processor, envelope, ++g_run, n), [&] {
    const std::string_view key = keys.next();
    raw.run_complete(key, raw.run_claim(key));
  });
}
BENCHMARK(BM_SqliteGuardAgainstRaw)->UseRealTime();

// The guard on memory (payload check on) against the memory store called
// directly.
void BM_MemoryGuardAgainstStore(benchmark::State& state) {
  auto processor = make_processor(idem::MemoryStore::create(), true);
  auto store = idem::MemoryStore::create();
  KeyMaker keys(++g_run, 0);
  idem::Envelope envelope = make_envelope();
  std::uint64_t n = 0;
  take_turns(state, guard_event(state, *processor, envelope, ++g_run, n), [&] {
    const std::string_view key = keys.next();
    idem::ClaimRequest request;
    request.key = key;
    request.event_id = "evt";
    idem::Result<idem::ClaimOutcome> out = store->claim(request);
    if (!out || !out->acquired()) state.SkipWithError("claim did not acquire");
    idem::CompleteRequest done;
    done.key = key;
    done.token = out ? out->token : 0;
    done.result = kResult;
    (void)store->complete(done);
  });
}
BENCHMARK(BM_MemoryGuardAgainstStore)->UseRealTime();

// ---------------------------------------------------------------------------
// process_async with N handlers in flight: each new event's handler keeps its
// Completion, and the oldest one is completed once N are held.

void run_async_in_flight(benchmark::State& state, idem::IdempotentEventProcessor& processor) {
  using Completion = idem::IdempotentEventProcessor::Completion;
  const auto in_flight = static_cast<std::size_t>(state.range(0));
  std::deque<Completion> held;
  std::uint64_t failures = 0;
  const idem::IdempotentEventProcessor::AsyncHandler handler = [&held](const idem::Envelope&, idem::ProcessingContext&,
                                                                       Completion completion) {
    held.push_back(std::move(completion));
  };
  const idem::IdempotentEventProcessor::AsyncCallback on_done =
      [&failures](idem::IdempotentEventProcessor::AsyncOutcome o) {
        if (o.exception || o.status != idem::ClaimStatus::kAcquired) ++failures;
      };
  idem::Envelope envelope = make_envelope();
  const std::uint64_t run = ++g_run;
  std::uint64_t n = 0;
  for (auto _ : state) {
    set_id(envelope, run, n++);
    processor.process_async(envelope, handler, on_done);
    if (held.size() >= in_flight) {
      Completion oldest = std::move(held.front());
      held.pop_front();
      oldest.succeed(kResult);
    }
  }
  while (!held.empty()) {
    held.front().succeed(kResult);
    held.pop_front();
  }
  if (failures != 0) state.SkipWithError("an event failed");
  state.SetItemsProcessed(state.iterations());
}

void BM_GuardAsyncMemory(benchmark::State& state) {
  auto processor = make_processor(idem::MemoryStore::create(), true);
  run_async_in_flight(state, *processor);
}
BENCHMARK(BM_GuardAsyncMemory)->ArgName("inflight")->Arg(1)->Arg(64)->Arg(256)->UseRealTime();

void BM_GuardAsyncSqlite(benchmark::State& state) {
  ScratchDb db;
  idem::SqliteStoreOptions options;
  options.path = db.path;
  auto processor = make_processor(idem::SqliteStore::create(options).value(), true);
  run_async_in_flight(state, *processor);
}
BENCHMARK(BM_GuardAsyncSqlite)->ArgName("inflight")->Arg(1)->Arg(64)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
