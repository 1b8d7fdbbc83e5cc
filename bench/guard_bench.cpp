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
//   BM_RawSqliteNewEvent               the same SQL, raw, same fingerprint
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

void BM_RawSqliteNewEvent(benchmark::State& state) {
  ScratchDb db;
  RawDb raw(db.path);
  raw.fingerprint = "0123456789abcdef0123456789abcdef";  // the guard's length
  KeyMaker keys(++g_run, 0);
  idem_bench::run_raw_new_events(state, raw, keys);
}
BENCHMARK(BM_RawSqliteNewEvent)->UseRealTime();

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
