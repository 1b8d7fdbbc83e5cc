// File: bench/observer_bench.cpp
//
// What observing costs on the fastest path Idem has: the guard over the
// memory store, for a new event (claim + mark_completed) and for a duplicate
// (claim answering COMPLETED). Three variants per path:
//   None            no observer
//   Metrics         MetricsRegistry
//   MetricsLogsOff  CompositeObserver{MetricsRegistry, LoggingObserver(kOff)}
// The target: Metrics and MetricsLogsOff within 10% of None.
//
// Interleave the variants and keep the best CPU time of many repetitions, so
// that load from other processes does not decide the comparison:
//   idem_bench_observer --benchmark_enable_random_interleaving=true
//                       --benchmark_repetitions=20 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <memory>
#include <string>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/core/tracing.h"
#include "idem/stores/memory.h"

namespace {

enum Variant : int { kNone = 0, kMetrics = 1, kMetricsLogsOff = 2 };

struct Fixture {
  std::shared_ptr<idem::MetricsRegistry> metrics;
  std::unique_ptr<idem::IdempotentEventProcessor> processor;
  std::atomic<std::uint64_t> next_key{0};
};

// One fresh store per benchmark run, so that every variant starts empty.
Fixture* g_fixture = nullptr;

void setup(const benchmark::State& state) {
  auto fixture = std::make_unique<Fixture>();
  idem::CheckerOptions options;
  const auto variant = static_cast<Variant>(state.range(0));
  if (variant != kNone) {
    fixture->metrics = std::make_shared<idem::MetricsRegistry>(idem::MetricsOptions{.store = "memory"});
    options.observer = fixture->metrics;
  }
  if (variant == kMetricsLogsOff) {
    auto logs = std::make_shared<idem::LoggingObserver>(idem::LoggingOptions{.min_level = idem::LogLevel::kOff});
    options.observer =
        std::make_shared<idem::CompositeObserver>(std::vector<std::shared_ptr<idem::Observer>>{fixture->metrics, logs});
  }
  auto checker = std::make_shared<idem::IdempotencyChecker>(idem::MemoryStore::create(), options);
  fixture->processor =
      std::make_unique<idem::IdempotentEventProcessor>(checker, idem::ProcessorOptions{.scope = "bench"});
  g_fixture = fixture.release();
}

void teardown(const benchmark::State&) {
  delete g_fixture;
  g_fixture = nullptr;
}

void set_id(idem::Envelope& envelope, std::uint64_t n) {
  char buffer[24];
  auto end = std::to_chars(buffer, buffer + sizeof(buffer), n).ptr;
  envelope.event_id.assign(buffer, end);
}

void label(benchmark::State& state) {
  static constexpr const char* kNames[] = {"None", "Metrics", "MetricsLogsOff"};
  state.SetLabel(kNames[state.range(0)]);
}

// A new event: claim (acquired) + complete.
void BM_GuardNewEvent(benchmark::State& state) {
  idem::Envelope envelope;
  for (auto _ : state) {
    set_id(envelope, g_fixture->next_key.fetch_add(1, std::memory_order_relaxed));
    auto ctx = g_fixture->processor->process(envelope);
    ctx.mark_completed("{}");
  }
  state.SetItemsProcessed(state.iterations());
  label(state);
}

// A duplicate of a completed event: claim answers COMPLETED.
void BM_GuardDuplicate(benchmark::State& state) {
  idem::Envelope envelope;
  // Each thread replays its own small set of completed keys.
  const int thread = state.thread_index() + 1;
  const std::uint64_t base = std::uint64_t{1'000'000'000} * static_cast<unsigned>(thread);
  for (std::uint64_t i = 0; i < 64; ++i) {
    set_id(envelope, base + i);
    auto ctx = g_fixture->processor->process(envelope);
    if (ctx.should_process()) ctx.mark_completed("{}");
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    set_id(envelope, base + (i++ % 64));
    auto ctx = g_fixture->processor->process(envelope);
    benchmark::DoNotOptimize(ctx.cached_result());
  }
  state.SetItemsProcessed(state.iterations());
  label(state);
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// The observer calls one new event makes (claim call + outcome, complete
// call, handler outcome, and the claim span), alone: a stable numerator for
// the overhead, since it does not depend on the store's allocation noise.
void BM_ObserverCallsPerEvent(benchmark::State& state) {
  idem::ClaimOutcome outcome;
  outcome.attempt = 1;
  outcome.token = 1;
  std::shared_ptr<idem::Observer> observer;
  auto metrics = std::make_shared<idem::MetricsRegistry>(idem::MetricsOptions{.store = "memory"});
  observer = metrics;
  if (state.range(0) == kMetricsLogsOff) {
    observer = std::make_shared<idem::CompositeObserver>(std::vector<std::shared_ptr<idem::Observer>>{
        metrics, std::make_shared<idem::LoggingObserver>(idem::LoggingOptions{.min_level = idem::LogLevel::kOff})});
  }
  for (auto _ : state) {
    auto span = observer->start_span("idem.claim");
    observer->on_store_call("memory", idem::StoreOp::kClaim, std::chrono::nanoseconds(900), nullptr);
    observer->on_claim(idem::ClaimObservation{"bench", "idempotency:events:bench:1", "1", "", &outcome});
    observer->on_store_call("memory", idem::StoreOp::kComplete, std::chrono::nanoseconds(700), nullptr);
    observer->on_handler("bench", idem::HandlerOutcome::kCompleted, std::chrono::nanoseconds(3000));
    benchmark::DoNotOptimize(span);
  }
  label(state);
}
BENCHMARK(BM_ObserverCallsPerEvent)->Arg(kMetrics)->Arg(kMetricsLogsOff)->ComputeStatistics("min", min_of);

// One thread, CPU time of that thread: robust to other processes on a shared
// machine (their time is not charged), which wall time is not. Compare the
// "_min" rows across variants. Two threads, wall time: striping keeps
// counting off the shared cache lines.
BENCHMARK(BM_GuardNewEvent)
    ->DenseRange(kNone, kMetricsLogsOff)
    ->Setup(setup)
    ->Teardown(teardown)
    ->ComputeStatistics("min", min_of);
BENCHMARK(BM_GuardDuplicate)
    ->DenseRange(kNone, kMetricsLogsOff)
    ->Setup(setup)
    ->Teardown(teardown)
    ->ComputeStatistics("min", min_of);
BENCHMARK(BM_GuardNewEvent)
    ->DenseRange(kNone, kMetricsLogsOff)
    ->Setup(setup)
    ->Teardown(teardown)
    ->Threads(2)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);
BENCHMARK(BM_GuardDuplicate)
    ->DenseRange(kNone, kMetricsLogsOff)
    ->Setup(setup)
    ->Teardown(teardown)
    ->Threads(2)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);

}  // namespace

BENCHMARK_MAIN();
