// The gauges the operator's kit (ops/) depends on: handlers in flight as the
// guard brackets them, the store snapshot (stuck PROCESSING records) and its
// poller, the circuit gauge and outage-code series present from the start,
// and the composite observer passing circuit changes on.
#include "idem/core/store_metrics.h"

#include <gtest/gtest.h>

#include <thread>

#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/core/tracing.h"
#include "idem/stores/memory.h"
#include "unit/patterns_support.h"
#include "unit/prometheus_checker.h"

namespace idem {
namespace {

using testing::check_prometheus_text;
using testing::make_envelope;

double gauge(const MetricsRegistry& metrics, const std::string& name,
             const std::vector<std::pair<std::string, std::string>>& labels) {
  const std::string text = metrics.render();
  auto check = check_prometheus_text(text);
  EXPECT_TRUE(check.ok()) << check.describe() << text;
  auto value = check.value(name, labels);
  EXPECT_TRUE(value.has_value()) << name << " missing from:\n" << text;
  return value.value_or(-1);
}

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store = MemoryStore::create({.clock = clock});
  std::shared_ptr<MetricsRegistry> metrics = std::make_shared<MetricsRegistry>(MetricsOptions{.store = "memory"});
  std::shared_ptr<IdempotencyChecker> checker = std::make_shared<IdempotencyChecker>(
      store, CheckerOptions{.lease = std::chrono::seconds(30), .observer = metrics});
};

TEST(HandlersInFlight, FollowsTheGuardFromClaimToVerdict) {
  Fixture f;
  IdempotentEventProcessor processor(f.checker, {.scope = "billing", .heartbeat = false});
  const std::vector<std::pair<std::string, std::string>> store{{"store", "memory"}};
  EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 0);
  {
    auto a = processor.process(make_envelope("a"));
    auto b = processor.process(make_envelope("b"));
    ASSERT_TRUE(a.should_process() && b.should_process());
    EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 2);
    auto dup = processor.process(make_envelope("a"));  // in progress: runs nothing
    EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 2);
    a.mark_completed("1");
    EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 1);
  }  // b is abandoned here (marked FAILED): its handler is over too
  EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 0);

  // The manual API opens no handler span: a claim held by hand is not a
  // guarded handler, and nothing would ever end it in the gauge.
  auto claim = f.checker->claim(make_envelope("c"));
  ASSERT_TRUE(claim && claim->outcome.acquired());
  EXPECT_EQ(gauge(*f.metrics, "idem_handlers_in_flight", store), 0);
}

TEST(HandlersInFlight, CountsThroughACompositeObserver) {
  auto metrics = std::make_shared<MetricsRegistry>(MetricsOptions{.store = "memory"});
  auto logs = std::make_shared<LoggingObserver>(LoggingOptions{.min_level = LogLevel::kOff});
  auto checker = std::make_shared<IdempotencyChecker>(
      MemoryStore::create(), CheckerOptions{.observer = std::make_shared<CompositeObserver>(
                                                std::vector<std::shared_ptr<Observer>>{logs, metrics})});
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  auto ctx = processor.process(make_envelope("a"));
  EXPECT_EQ(gauge(*metrics, "idem_handlers_in_flight", {{"store", "memory"}}), 1);
  ctx.mark_completed("1");
  EXPECT_EQ(gauge(*metrics, "idem_handlers_in_flight", {{"store", "memory"}}), 0);
}

TEST(CompositeObserver, PassesCircuitChangesOn) {
  auto metrics = std::make_shared<MetricsRegistry>();
  CompositeObserver composite({metrics});
  composite.on_circuit_state("redis", CircuitState::kOpen);
  EXPECT_EQ(gauge(*metrics, "idem_circuit_breaker_state", {{"store", "redis"}}), 2);
}

TEST(MetricsRegistry, SeriesAlertsNeedExistFromTheFirstCall) {
  MetricsRegistry metrics(MetricsOptions{.store = "memory"});
  metrics.on_store_call("memory", StoreOp::kClaim, std::chrono::microseconds(10), nullptr);
  // A store that never reported a breaker transition is closed.
  EXPECT_EQ(gauge(metrics, "idem_circuit_breaker_state", {{"store", "memory"}}), 0);
  // The outage codes start at 0 for every operation in use, so that rate()
  // sees the first error; other operations and codes stay absent.
  EXPECT_EQ(gauge(metrics, "idem_store_errors_total", {{"store", "memory"}, {"op", "claim"}, {"code", "unavailable"}}),
            0);
  EXPECT_EQ(gauge(metrics, "idem_store_errors_total", {{"store", "memory"}, {"op", "claim"}, {"code", "timeout"}}), 0);
  const std::string text = metrics.render();
  EXPECT_EQ(text.find(R"(op="complete")"), std::string::npos) << text;
  EXPECT_EQ(text.find(R"(code="internal")"), std::string::npos) << text;
}

TEST(SnapshotStore, FindsProcessingRecordsWhoseLeaseRanOut) {
  Fixture f;
  // a: completed. b: failed. c: PROCESSING, its worker "died". d: claimed
  // later and still alive.
  const Claim a = f.checker->claim(make_envelope("a")).value();
  const Claim b = f.checker->claim(make_envelope("b")).value();
  ASSERT_TRUE(f.checker->claim(make_envelope("c")));
  ASSERT_TRUE(f.checker->complete(a.key, a.outcome.token, "1"));
  ASSERT_TRUE(f.checker->fail(b.key, b.outcome.token, "boom", true));
  f.clock->advance(std::chrono::seconds(100));  // c's 30 s lease ran out 70 s ago
  ASSERT_TRUE(f.checker->claim(make_envelope("d")));
  f.clock->advance(std::chrono::seconds(5));

  auto snapshot = snapshot_store(*f.store, {.page_size = 1, .clock = f.clock});  // one record a page
  ASSERT_TRUE(snapshot) << snapshot.error().to_string();
  EXPECT_EQ(snapshot->processing, 2u);
  EXPECT_EQ(snapshot->completed, 1u);
  EXPECT_EQ(snapshot->failed, 1u);
  EXPECT_EQ(snapshot->oldest_processing_age, std::chrono::seconds(105));
  EXPECT_EQ(snapshot->lease_expired, 1u);
  EXPECT_EQ(snapshot->lease_expired_max, std::chrono::seconds(75));
  EXPECT_EQ(snapshot->taken_at, f.clock->now());

  f.metrics->set_store_snapshot("memory", *snapshot);
  EXPECT_EQ(gauge(*f.metrics, "idem_records", {{"store", "memory"}, {"status", "processing"}}), 2);
  EXPECT_EQ(gauge(*f.metrics, "idem_records", {{"store", "memory"}, {"status", "completed"}}), 1);
  EXPECT_EQ(gauge(*f.metrics, "idem_records", {{"store", "memory"}, {"status", "failed"}}), 1);
  EXPECT_EQ(gauge(*f.metrics, "idem_processing_oldest_age_seconds", {{"store", "memory"}}), 105);
  EXPECT_EQ(gauge(*f.metrics, "idem_processing_lease_expired_records", {{"store", "memory"}}), 1);
  EXPECT_EQ(gauge(*f.metrics, "idem_processing_lease_expired_max_seconds", {{"store", "memory"}}), 75);
  EXPECT_EQ(gauge(*f.metrics, "idem_store_snapshot_timestamp_seconds", {{"store", "memory"}}),
            static_cast<double>(f.clock->now().time_since_epoch().count()) / 1e3);

  // The scan limit makes the expired count a lower bound, never a wrong one.
  auto capped = snapshot_store(*f.store, {.max_processing_scanned = 1, .page_size = 1, .clock = f.clock});
  ASSERT_TRUE(capped);
  EXPECT_LE(capped->lease_expired, 1u);
}

TEST(SnapshotStore, EmptyStoreIsAllZeros) {
  Fixture f;
  auto snapshot = snapshot_store(*f.store, {.clock = f.clock});
  ASSERT_TRUE(snapshot);
  EXPECT_EQ(snapshot->processing + snapshot->completed + snapshot->failed + snapshot->lease_expired, 0u);
  EXPECT_EQ(snapshot->oldest_processing_age.count(), 0);
}

TEST(StoreSnapshotPoller, ExportsAtOnceAndReportsFailures) {
  auto inner = MemoryStore::create();
  auto store = std::make_shared<testing::OutageStore>(inner);
  auto metrics = std::make_shared<MetricsRegistry>();
  std::atomic<int> errors{0};
  {
    StoreSnapshotPoller poller(
        store, metrics,
        {.interval = std::chrono::milliseconds(5), .store_label = "primary", .on_error = [&](const Error& e) {
           EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
           ++errors;
         }});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (poller.snapshots() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_GE(poller.snapshots(), 1u);
    EXPECT_EQ(gauge(*metrics, "idem_records", {{"store", "primary"}, {"status", "processing"}}), 0);
    store->down = true;
    while (poller.failures() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_GE(poller.failures(), 1u);
  }  // joins
  EXPECT_GE(errors.load(), 1);
}

TEST(StoreSnapshotPoller, RejectsBadArguments) {
  auto metrics = std::make_shared<MetricsRegistry>();
  EXPECT_THROW(StoreSnapshotPoller(nullptr, metrics), IdemError);
  EXPECT_THROW(StoreSnapshotPoller(MemoryStore::create(), metrics, {.interval = std::chrono::milliseconds(0)}),
               IdemError);
}

}  // namespace
}  // namespace idem
