// MetricsRegistry: exact counts for scripted outcomes (direct observer calls
// and the real guard over a memory store), the text format checked by a
// strict parser (which is itself tested against known violations), striping
// under concurrency, and the /metrics server.
#include "idem/core/metrics.h"

#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/processor.h"
#include "idem/stores/memory.h"
#include "unit/prometheus_checker.h"

#ifdef IDEM_TEST_METRICS_HTTP
#include <httplib.h>

#include "idem/integrations/metrics_http.h"
#endif

namespace idem {
namespace {

using testing::check_prometheus_text;
using Labels = std::vector<std::pair<std::string, std::string>>;

// --- The checker itself: it must reject each rule's violation. -----------

constexpr std::string_view kValid =
    "# HELP a_total Some help with \\\\ and \\n.\n"
    "# TYPE a_total counter\n"
    "a_total{x=\"1\"} 3\n"
    "a_total{x=\"q\\\"\\\\\\n\",} 4 1700000000000\n"
    "# a plain comment\n"
    "\n"
    "# TYPE g gauge\n"
    "g -1.5e3\n"
    "g{k=\"v\"} NaN\n"
    "# TYPE h histogram\n"
    "h_bucket{le=\"0.1\"} 1\n"
    "h_bucket{le=\"1\"} 2\n"
    "h_bucket{le=\"+Inf\"} 3\n"
    "h_sum 1.7\n"
    "h_count 3\n";

TEST(PrometheusChecker, AcceptsValidText) {
  auto check = check_prometheus_text(kValid);
  EXPECT_TRUE(check.ok()) << check.describe();
  EXPECT_EQ(check.value("a_total", {{"x", "q\"\\\n"}}), 4.0);
  EXPECT_EQ(check.value("h_count"), 3.0);
}

struct Violation {
  const char* text;
  const char* expected;  // a substring of one reported error
};

class PrometheusCheckerRejects : public ::testing::TestWithParam<Violation> {};

TEST_P(PrometheusCheckerRejects, Violation) {
  auto check = check_prometheus_text(GetParam().text);
  ASSERT_FALSE(check.ok()) << "accepted: " << GetParam().text;
  const bool found = std::any_of(check.errors.begin(), check.errors.end(),
                                 [](const std::string& e) { return e.find(GetParam().expected) != std::string::npos; });
  EXPECT_TRUE(found) << "wanted '" << GetParam().expected << "', got:\n" << check.describe();
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PrometheusCheckerRejects,
    ::testing::Values(
        Violation{"# TYPE a_total counter\na_total 1", "last line"},
        Violation{"# TYPE 1a_total counter\n", "invalid metric name"}, Violation{"a-b 1\n", "no blank between series"},
        Violation{"# TYPE a_total counter\na_total{1x=\"v\"} 1\n", "invalid label name"},
        Violation{"# TYPE a_total counter\na_total{__x=\"v\"} 1\n", "reserved label"},
        Violation{"# TYPE a_total counter\na_total{x=\"v\",x=\"w\"} 1\n", "given twice"},
        Violation{"# TYPE a_total counter\na_total{x=v} 1\n", "not quoted"},
        Violation{"# TYPE a_total counter\na_total{x=\"\\t\"} 1\n", "invalid escape"},
        Violation{"# TYPE a_total counter\na_total{x=\"v} 1\n", "unterminated"},
        Violation{"# TYPE a_total counter\na_total one\n", "invalid value"},
        Violation{"# TYPE a_total counter\na_total 0x10\n", "invalid value"},
        Violation{"# TYPE a_total counter\na_total 1 12.5\n", "invalid timestamp"},
        Violation{"a_total 1\n# TYPE a_total counter\n", "after its first sample"},
        Violation{"# TYPE a_total counter\n# TYPE a_total counter\n", "second TYPE"},
        Violation{"# HELP a_total x\n# HELP a_total y\n", "second HELP"},
        Violation{"# HELP a_total bad \\t escape\n", "invalid escape in HELP"},
        Violation{"# TYPE a_total countr\n", "unknown type"},
        Violation{"# TYPE a counter\na 1\n", "does not end in _total"},
        Violation{"# TYPE a_total counter\na_total -1\n", "negative"},
        Violation{"# TYPE a_total counter\na_total 1\na_total 2\n", "duplicate series"},
        Violation{"# TYPE a_total counter\na_total{x=\"1\",y=\"2\"} 1\na_total{y=\"2\",x=\"1\"} 2\n",
                  "duplicate series"},
        Violation{"# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\na_total{x=\"1\"} 2\n", "not one group"},
        Violation{"# TYPE g gauge\ng{le=\"1\"} 1\n", "le label outside"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "+Inf"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                  "decrease"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"
                  "h_count 1\n",
                  "increasing le"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", "!= _count"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\n", "no _count"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", "no _sum"},
        Violation{"# TYPE h histogram\nh_bucket 2\nh_sum 1\nh_count 2\n", "bucket without le"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum{le=\"1\"} 1\nh_count 2\n", "le label on"},
        Violation{"# TYPE h histogram\nh_bucket{le=\"x\"} 2\nh_sum 1\nh_count 2\n", "invalid le"}));

// --- The registry, fed directly. --------------------------------------------

ClaimOutcome outcome(ClaimStatus status, AcquireKind kind = AcquireKind::kNew) {
  ClaimOutcome o;
  o.status = status;
  o.acquire_kind = kind;
  return o;
}

void claim(MetricsRegistry& m, std::string_view scope, const ClaimOutcome& o) {
  m.on_claim(ClaimObservation{scope, "k", "e", "t", &o});
}

Labels scoped(std::string scope, std::string store = "memory") { return {{"scope", scope}, {"store", store}}; }

TEST(MetricsRegistry, EmptyRegistryRendersValidText) {
  MetricsRegistry metrics;
  auto check = check_prometheus_text(metrics.render());
  EXPECT_TRUE(check.ok()) << check.describe() << metrics.render();
  EXPECT_EQ(check.types.at("idem_claims_total"), "counter");
  EXPECT_EQ(check.types.at("idem_store_call_duration_seconds"), "histogram");
  EXPECT_EQ(check.types.at("idem_circuit_breaker_state"), "gauge");
}

TEST(MetricsRegistry, CountsAScriptedSequenceExactly) {
  MetricsRegistry metrics(MetricsOptions{.store = "memory"});
  claim(metrics, "billing", outcome(ClaimStatus::kAcquired, AcquireKind::kNew));
  claim(metrics, "billing", outcome(ClaimStatus::kAcquired, AcquireKind::kNew));
  claim(metrics, "billing", outcome(ClaimStatus::kAcquired, AcquireKind::kTakeover));
  claim(metrics, "billing", outcome(ClaimStatus::kAcquired, AcquireKind::kRetry));
  claim(metrics, "billing", outcome(ClaimStatus::kCompleted));
  claim(metrics, "billing", outcome(ClaimStatus::kCompleted));
  claim(metrics, "billing", outcome(ClaimStatus::kCompleted));
  claim(metrics, "billing", outcome(ClaimStatus::kInProgress));
  claim(metrics, "billing", outcome(ClaimStatus::kFailed));
  claim(metrics, "billing", outcome(ClaimStatus::kMismatch));
  claim(metrics, "shipping", outcome(ClaimStatus::kAcquired, AcquireKind::kNew));
  metrics.on_claim(ClaimObservation{"billing", "k", "e", "t", nullptr});  // a store failure: not a claim
  using std::chrono::milliseconds;
  metrics.on_handler("billing", HandlerOutcome::kCompleted, milliseconds(3));
  metrics.on_handler("billing", HandlerOutcome::kCompleted, milliseconds(4));
  metrics.on_handler("billing", HandlerOutcome::kFailedRetryable, milliseconds(1));
  metrics.on_handler("billing", HandlerOutcome::kFailedTerminal, milliseconds(1));
  metrics.on_handler("billing", HandlerOutcome::kAbandoned, milliseconds(1));
  metrics.on_handler("billing", HandlerOutcome::kLeaseLost, milliseconds(1));
  metrics.on_fail_open("billing", Error(ErrorCode::kUnavailable, "down"));
  const Error timeout(ErrorCode::kTimeout, "slow");
  metrics.on_store_call("memory", StoreOp::kClaim, milliseconds(2), &timeout);
  metrics.on_store_call("memory", StoreOp::kClaim, milliseconds(2), nullptr);
  metrics.set_circuit_state("memory", CircuitState::kHalfOpen);

  const std::string text = metrics.render();
  auto check = check_prometheus_text(text);
  ASSERT_TRUE(check.ok()) << check.describe() << text;
  const Labels billing = scoped("billing");
  EXPECT_EQ(check.value("idem_claims_total", billing), 10.0);
  EXPECT_EQ(check.value("idem_new_total", billing), 2.0);
  EXPECT_EQ(check.value("idem_takeovers_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_retries_total", billing), 1.0);
  auto with = [](Labels labels, std::string name, std::string value) {
    labels.emplace_back(std::move(name), std::move(value));
    return labels;
  };
  EXPECT_EQ(check.value("idem_duplicates_total", with(billing, "state", "completed")), 3.0);
  EXPECT_EQ(check.value("idem_duplicates_total", with(billing, "state", "in_progress")), 1.0);
  EXPECT_EQ(check.value("idem_duplicates_total", with(billing, "state", "failed")), 1.0);
  EXPECT_EQ(check.value("idem_mismatches_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_completions_total", billing), 2.0);
  EXPECT_EQ(check.value("idem_failures_total", with(billing, "kind", "retryable")), 1.0);
  EXPECT_EQ(check.value("idem_failures_total", with(billing, "kind", "terminal")), 1.0);
  EXPECT_EQ(check.value("idem_failures_total", with(billing, "kind", "abandoned")), 1.0);
  EXPECT_EQ(check.value("idem_lease_lost_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_fail_open_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_claims_total", scoped("shipping")), 1.0);
  EXPECT_EQ(check.value("idem_new_total", scoped("shipping")), 1.0);
  EXPECT_EQ(check.value("idem_store_errors_total", {{"store", "memory"}, {"op", "claim"}, {"code", "timeout"}}), 1.0);
  EXPECT_EQ(check.value("idem_circuit_breaker_state", {{"store", "memory"}}), 1.0);
  EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", {{"store", "memory"}, {"op", "claim"}}), 2.0);
  EXPECT_EQ(check.value("idem_handler_duration_seconds_count", billing), 6.0);
  EXPECT_NEAR(*check.value("idem_handler_duration_seconds_sum", billing), 0.011, 1e-12);
  EXPECT_EQ(metrics.counter_value("idem_new_total", R"(scope="billing",store="memory")"), 2u);
}

TEST(MetricsRegistry, BucketsAreInclusiveAndCumulative) {
  MetricsRegistry metrics(MetricsOptions{.store = "s", .store_buckets = {0.001, 0.01}});
  using std::chrono::microseconds;
  metrics.on_store_call("s", StoreOp::kGet, microseconds(1000), nullptr);   // == 0.001: in le="0.001"
  metrics.on_store_call("s", StoreOp::kGet, microseconds(1001), nullptr);   // le="0.01"
  metrics.on_store_call("s", StoreOp::kGet, microseconds(10000), nullptr);  // == 0.01
  metrics.on_store_call("s", StoreOp::kGet, microseconds(20000), nullptr);  // +Inf only
  auto check = check_prometheus_text(metrics.render());
  ASSERT_TRUE(check.ok()) << check.describe();
  const Labels get{{"store", "s"}, {"op", "get"}};
  auto le = [&](std::string bound) {
    Labels l = get;
    l.emplace_back("le", std::move(bound));
    return check.value("idem_store_call_duration_seconds_bucket", l);
  };
  EXPECT_EQ(le("0.001"), 1.0);
  EXPECT_EQ(le("0.01"), 3.0);
  EXPECT_EQ(le("+Inf"), 4.0);
  EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", get), 4.0);
  EXPECT_NEAR(*check.value("idem_store_call_duration_seconds_sum", get), 0.032001, 1e-12);
  // Operations never called have no series.
  EXPECT_FALSE(check.value("idem_store_call_duration_seconds_count", {{"store", "s"}, {"op", "claim"}}));
}

TEST(MetricsRegistry, EscapesLabelValues) {
  MetricsRegistry metrics(MetricsOptions{.store = "memory"});
  const std::string scope = "we\"ird\\scope\nx";
  claim(metrics, scope, outcome(ClaimStatus::kAcquired));
  const std::string text = metrics.render();
  EXPECT_NE(text.find(R"(scope="we\"ird\\scope\nx")"), std::string::npos) << text;
  auto check = check_prometheus_text(text);
  ASSERT_TRUE(check.ok()) << check.describe();
  EXPECT_EQ(check.value("idem_new_total", scoped(scope)), 1.0);
}

TEST(MetricsRegistry, LearnsTheStoreLabelFromTheFirstCall) {
  MetricsRegistry metrics;
  metrics.on_store_call("sqlite", StoreOp::kClaim, std::chrono::microseconds(5), nullptr);
  claim(metrics, "", outcome(ClaimStatus::kAcquired));
  auto check = check_prometheus_text(metrics.render());
  ASSERT_TRUE(check.ok()) << check.describe();
  EXPECT_EQ(check.value("idem_new_total", scoped("", "sqlite")), 1.0);
}

TEST(MetricsRegistry, RejectsBadOptions) {
  EXPECT_THROW(MetricsRegistry(MetricsOptions{.prefix = "1bad"}), std::invalid_argument);
  EXPECT_THROW(MetricsRegistry(MetricsOptions{.store_buckets = {0.1, 0.1}}), std::invalid_argument);
  EXPECT_THROW(MetricsRegistry(MetricsOptions{.handler_buckets = {-1}}), std::invalid_argument);
}

TEST(MetricsRegistry, ConcurrentCountsAreExact) {
  // More threads than owned stripes, so some share a stripe (atomic adds);
  // the second round reuses the stripes the first round's threads handed back.
  constexpr int kThreads = 24;
  constexpr int kPerThread = 40'000;
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    MetricsRegistry metrics(MetricsOptions{.store = "memory"});
    const ClaimOutcome acquired = outcome(ClaimStatus::kAcquired);
    std::vector<std::thread> threads;
    std::latch start(kThreads);  // all threads count at the same time
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const std::string scope = t % 2 == 0 ? "even" : "odd";
        start.arrive_and_wait();
        for (int i = 0; i < kPerThread; ++i) {
          metrics.on_claim(ClaimObservation{scope, "k", "e", "", &acquired});
          metrics.on_store_call("memory", StoreOp::kClaim, std::chrono::nanoseconds(i), nullptr);
        }
      });
    }
    // Scrapes while counting must stay valid.
    bool scrapes_valid = true;
    for (int i = 0; i < 20; ++i) scrapes_valid = scrapes_valid && check_prometheus_text(metrics.render()).ok();
    for (auto& thread : threads) thread.join();
    EXPECT_TRUE(scrapes_valid);
    auto check = check_prometheus_text(metrics.render());
    ASSERT_TRUE(check.ok()) << check.describe();
    EXPECT_EQ(check.value("idem_new_total", scoped("even")), kThreads / 2 * kPerThread);
    EXPECT_EQ(check.value("idem_new_total", scoped("odd")), kThreads / 2 * kPerThread);
    EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", {{"store", "memory"}, {"op", "claim"}}),
              kThreads * kPerThread);
  }
}

// --- The registry behind the real guard. -------------------------------------

Envelope event(std::string id, std::string payload = "{}") {
  Envelope e;
  e.event_id = std::move(id);
  e.payload = std::move(payload);
  return e;
}

TEST(MetricsRegistry, CountsTheRealGuardExactly) {
  auto clock = std::make_shared<ManualClock>();
  auto metrics = std::make_shared<MetricsRegistry>();
  CheckerOptions checker_options;
  checker_options.lease = std::chrono::seconds(10);
  checker_options.observer = metrics;
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock}), checker_options);
  IdempotentEventProcessor processor(checker, {.scope = "billing", .heartbeat = false});

  {  // new, completed; then a completed duplicate
    auto ctx = processor.process(event("e1"));
    ASSERT_TRUE(ctx.should_process());
    ctx.mark_completed("1");
  }
  EXPECT_EQ(processor.process(event("e1")).status(), ClaimStatus::kCompleted);
  {  // new; an in-progress duplicate; a takeover after the lease; the old owner loses
    auto first = processor.process(event("e2"));
    ASSERT_TRUE(first.should_process());
    EXPECT_EQ(processor.process(event("e2")).status(), ClaimStatus::kInProgress);
    clock->advance(std::chrono::seconds(11));
    auto second = processor.process(event("e2"));
    ASSERT_TRUE(second.is_takeover());
    EXPECT_THROW(first.mark_completed("stale"), LeaseLostError);
    second.mark_completed("2");
  }
  {  // new, retryable failure, retry, completed
    auto ctx = processor.process(event("e3"));
    ctx.mark_failed("boom", FailureKind::kRetryable);
  }
  {
    auto ctx = processor.process(event("e3"));
    ASSERT_EQ(ctx.acquire_kind(), AcquireKind::kRetry);
    ctx.mark_completed("3");
  }
  {  // new, terminal failure, failed duplicate
    auto ctx = processor.process(event("e4"));
    ctx.mark_failed("bad", FailureKind::kTerminal);
  }
  EXPECT_EQ(processor.process(event("e4")).status(), ClaimStatus::kFailed);
  {  // new, abandoned
    auto ctx = processor.process(event("e5"));
    ASSERT_TRUE(ctx.should_process());
  }
  EXPECT_THROW(processor.process(event("e1", R"({"other":1})")), KeyMismatchError);

  const std::string text = metrics->render();
  auto check = check_prometheus_text(text);
  ASSERT_TRUE(check.ok()) << check.describe() << text;
  const Labels billing = scoped("billing");
  auto with = [&](std::string name, std::string value) {
    Labels labels = billing;
    labels.emplace_back(std::move(name), std::move(value));
    return labels;
  };
  EXPECT_EQ(check.value("idem_claims_total", billing), 11.0) << text;
  EXPECT_EQ(check.value("idem_new_total", billing), 5.0);
  EXPECT_EQ(check.value("idem_takeovers_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_retries_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_duplicates_total", with("state", "completed")), 1.0);
  EXPECT_EQ(check.value("idem_duplicates_total", with("state", "in_progress")), 1.0);
  EXPECT_EQ(check.value("idem_duplicates_total", with("state", "failed")), 1.0);
  EXPECT_EQ(check.value("idem_mismatches_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_completions_total", billing), 3.0);
  EXPECT_EQ(check.value("idem_failures_total", with("kind", "retryable")), 1.0);
  EXPECT_EQ(check.value("idem_failures_total", with("kind", "terminal")), 1.0);
  EXPECT_EQ(check.value("idem_failures_total", with("kind", "abandoned")), 1.0);
  EXPECT_EQ(check.value("idem_lease_lost_total", billing), 1.0);
  EXPECT_EQ(check.value("idem_fail_open_total", billing), 0.0);
  EXPECT_EQ(check.value("idem_handler_duration_seconds_count", billing), 7.0);
  const Labels claim_op{{"store", "memory"}, {"op", "claim"}};
  EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", claim_op), 11.0);
  EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", {{"store", "memory"}, {"op", "complete"}}), 4.0);
  EXPECT_EQ(check.value("idem_store_call_duration_seconds_count", {{"store", "memory"}, {"op", "fail"}}), 3.0);
  EXPECT_EQ(check.value("idem_store_errors_total", {{"store", "memory"}, {"op", "complete"}, {"code", "lease_lost"}}),
            1.0);
}

// A store that is down: every call fails with kUnavailable.
class DownStore final : public Store {
 public:
  std::string_view kind() const noexcept override { return "down"; }
  Result<ClaimOutcome> claim(const ClaimRequest&) override { return down(); }
  Status complete(const CompleteRequest&) override { return down(); }
  Status fail(const FailRequest&) override { return down(); }
  Status extend(std::string_view, Token, std::chrono::milliseconds) override { return down(); }
  Status checkpoint(std::string_view, Token, const Checkpoint&) override { return down(); }
  Result<std::optional<IdempotencyRecord>> get(std::string_view) override { return down(); }
  Result<bool> remove(std::string_view) override { return down(); }
  Result<ScanPage> scan(const ScanOptions&) override { return down(); }
  Result<StoreStats> stats() override { return down(); }
  Result<SweepReport> sweep() override { return down(); }
  Status ping() override { return down(); }

 private:
  static Error down() { return Error(ErrorCode::kUnavailable, "connection refused"); }
};

TEST(MetricsRegistry, CountsFailOpenAndStoreErrors) {
  auto metrics = std::make_shared<MetricsRegistry>();
  CheckerOptions options;
  options.observer = metrics;
  options.outage_policy = OutagePolicy::kFailOpen;
  auto checker = std::make_shared<IdempotencyChecker>(std::make_shared<DownStore>(), options);
  IdempotentEventProcessor processor(checker, {.scope = "s", .heartbeat = false});
  {
    auto ctx = processor.process(event("e1"));
    EXPECT_TRUE(ctx.is_unprotected());
    ctx.mark_completed("r");
  }
  auto check = check_prometheus_text(metrics->render());
  ASSERT_TRUE(check.ok()) << check.describe();
  EXPECT_EQ(check.value("idem_fail_open_total", scoped("s", "down")), 1.0);
  EXPECT_EQ(check.value("idem_claims_total", scoped("s", "down")), 0.0);
  EXPECT_EQ(check.value("idem_store_errors_total", {{"store", "down"}, {"op", "claim"}, {"code", "unavailable"}}), 1.0);
}

// --- /metrics over HTTP. ---------------------------------------------------
#ifdef IDEM_TEST_METRICS_HTTP

TEST(MetricsServer, ServesValidTextOnLoopback) {
  auto metrics = std::make_shared<MetricsRegistry>(MetricsOptions{.store = "memory"});
  claim(*metrics, "billing", outcome(ClaimStatus::kAcquired));
  auto server = MetricsServer::start(metrics);
  ASSERT_TRUE(server.ok()) << server.error().to_string();
  ASSERT_GT((*server)->port(), 0);
  httplib::Client client("127.0.0.1", (*server)->port());
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), MetricsRegistry::kContentType);
  auto check = check_prometheus_text(response->body);
  ASSERT_TRUE(check.ok()) << check.describe();
  EXPECT_EQ(check.value("idem_new_total", scoped("billing")), 1.0);
  EXPECT_EQ(client.Get("/other")->status, 404);
  (*server)->stop();
  (*server)->stop();  // idempotent
}

TEST(MetricsServer, StopsRightAfterStart) {
  // httplib ignores stop() before its accept loop runs; start() must wait.
  for (int i = 0; i < 20; ++i) {
    auto server = MetricsServer::start(std::make_shared<MetricsRegistry>());
    ASSERT_TRUE(server.ok());
  }
}

TEST(MetricsServer, ReportsABusyPort) {
  auto first = MetricsServer::start(std::make_shared<MetricsRegistry>());
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::start(std::make_shared<MetricsRegistry>(), {.port = (*first)->port()});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
}

#endif  // IDEM_TEST_METRICS_HTTP

}  // namespace
}  // namespace idem
