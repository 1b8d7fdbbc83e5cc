// Tracing and logging observers: attribute names, one log line per outcome
// (logfmt and JSON), level filtering, fan-out, and spans around the real
// checker's claims.
#include "idem/core/tracing.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <variant>

#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/stores/memory.h"
#include "support/recording_tracer.h"

namespace idem {
namespace {

struct Captured {
  std::mutex mutex;
  std::vector<std::pair<LogLevel, std::string>> lines;
  LogSink sink() {
    return [this](LogLevel level, std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(level, std::string(line));
    };
  }
};

ClaimOutcome acquired(AcquireKind kind, std::uint32_t attempt, Token token) {
  ClaimOutcome o;
  o.status = ClaimStatus::kAcquired;
  o.acquire_kind = kind;
  o.attempt = attempt;
  o.token = token;
  return o;
}

TEST(LoggingObserver, OneLogfmtLinePerOutcome) {
  Captured captured;
  LoggingObserver logs({.min_level = LogLevel::kDebug, .sink = captured.sink(), .timestamps = false});
  const ClaimOutcome takeover = acquired(AcquireKind::kTakeover, 2, 7);
  logs.on_claim({"billing", "idempotency:events:billing:e1", "e1", "order created", &takeover});
  logs.on_handler("billing", HandlerOutcome::kFailedTerminal, std::chrono::milliseconds(12));
  const Error error(ErrorCode::kTimeout, "redis: read timed out");
  logs.on_store_call("redis", StoreOp::kComplete, std::chrono::milliseconds(250), &error);
  logs.on_store_call("redis", StoreOp::kComplete, std::chrono::milliseconds(1), nullptr);  // success: no line
  logs.on_fail_open("billing", Error(ErrorCode::kUnavailable, "down"));

  ASSERT_EQ(captured.lines.size(), 4u);
  EXPECT_EQ(captured.lines[0].first, LogLevel::kInfo);
  EXPECT_EQ(captured.lines[0].second,
            "level=info msg=\"idem claim\" idem.scope=billing idem.key=idempotency:events:billing:e1 "
            "messaging.message.id=e1 idem.event_type=\"order created\" idem.outcome=takeover idem.attempt=2 "
            "idem.token=7");
  EXPECT_EQ(captured.lines[1].second,
            "level=warn msg=\"idem handler\" idem.scope=billing idem.outcome=failed_terminal idem.latency_ms=12");
  EXPECT_EQ(captured.lines[2].second,
            "level=warn msg=\"idem store error\" idem.store=redis idem.op=complete error.type=timeout "
            "error=\"redis: read timed out\" idem.latency_ms=250");
  EXPECT_EQ(captured.lines[3].first, LogLevel::kError);
  EXPECT_NE(captured.lines[3].second.find("error.type=unavailable"), std::string::npos);
}

TEST(LoggingObserver, JsonLinesParse) {
  Captured captured;
  LoggingObserver logs({.format = LogFormat::kJson, .min_level = LogLevel::kDebug, .sink = captured.sink()});
  const ClaimOutcome fresh = acquired(AcquireKind::kNew, 1, 3);
  logs.on_claim({"", "k\"ey\n", "e\t1", "", &fresh});
  ASSERT_EQ(captured.lines.size(), 1u);
  auto json = nlohmann::json::parse(captured.lines[0].second);
  EXPECT_EQ(json["level"], "debug");
  EXPECT_EQ(json["idem.key"], "k\"ey\n");
  EXPECT_EQ(json["messaging.message.id"], "e\t1");
  EXPECT_EQ(json["idem.outcome"], "new");
  EXPECT_EQ(json["idem.token"], 3);
  EXPECT_TRUE(json.contains("ts"));
  EXPECT_FALSE(json.contains("idem.scope"));
}

TEST(LoggingObserver, LevelsFilterAndOffSilences) {
  Captured captured;
  LoggingObserver info({.sink = captured.sink()});  // default: info and above
  const ClaimOutcome fresh = acquired(AcquireKind::kNew, 1, 1);
  ClaimOutcome completed;
  completed.status = ClaimStatus::kCompleted;
  ClaimOutcome mismatch;
  mismatch.status = ClaimStatus::kMismatch;
  info.on_claim({"", "k", "e", "", &fresh});            // debug: dropped
  info.on_claim({"", "k", "e", "", &completed});        // debug: dropped
  info.on_claim({"", "k", "e", "", &mismatch});         // warn
  info.on_handler("", HandlerOutcome::kCompleted, {});  // debug: dropped
  info.on_handler("", HandlerOutcome::kLeaseLost, {});  // warn
  ASSERT_EQ(captured.lines.size(), 2u);
  EXPECT_NE(captured.lines[0].second.find("idem.outcome=mismatch"), std::string::npos);
  EXPECT_NE(captured.lines[1].second.find("idem.outcome=lease_lost"), std::string::npos);

  LoggingObserver off({.min_level = LogLevel::kOff, .sink = captured.sink(), .log_spans = true});
  off.on_claim({"", "k", "e", "", &mismatch});
  off.on_fail_open("", Error(ErrorCode::kUnavailable, "x"));
  EXPECT_EQ(off.start_span("idem.claim"), nullptr);
  EXPECT_EQ(captured.lines.size(), 2u);
}

TEST(LoggingObserver, CanLeaveKeysOut) {
  Captured captured;
  LoggingObserver logs({.min_level = LogLevel::kDebug, .sink = captured.sink(), .include_keys = false});
  const ClaimOutcome fresh = acquired(AcquireKind::kNew, 1, 1);
  logs.on_claim({"", "alice@example.com", "e1", "", &fresh});
  ASSERT_EQ(captured.lines.size(), 1u);
  EXPECT_EQ(captured.lines[0].second.find("alice"), std::string::npos);
}

TEST(LoggingObserver, LogsSpansWithDuration) {
  Captured captured;
  LoggingObserver logs({.min_level = LogLevel::kDebug, .sink = captured.sink(), .log_spans = true});
  {
    auto span = logs.start_span(trace::kSpanClaim);
    ASSERT_NE(span, nullptr);
    span->set_attribute(trace::kAttempt, std::int64_t{2});
    span->set_error("boom");
  }
  ASSERT_EQ(captured.lines.size(), 1u);
  const std::string& line = captured.lines[0].second;
  EXPECT_NE(line.find("span=idem.claim"), std::string::npos) << line;
  EXPECT_NE(line.find("idem.attempt=2"), std::string::npos) << line;
  EXPECT_NE(line.find("duration_us="), std::string::npos) << line;
  EXPECT_NE(line.find("error=boom"), std::string::npos) << line;
}

// A tracer that records spans and their attributes.
using FakeTracer = test::RecordingTracer;

TEST(TracingObserver, AddsCommonAttributes) {
  auto tracer = std::make_shared<FakeTracer>();
  TracingObserver traced(tracer, {.messaging_system = "kafka", .store = "redis"});
  { auto span = traced.start_span(trace::kSpanHandler); }
  ASSERT_EQ(tracer->ended.size(), 1u);
  EXPECT_EQ(tracer->ended[0].name, "idem.handler");
  EXPECT_EQ(tracer->ended[0].attributes.at("messaging.system"), "kafka");
  EXPECT_EQ(tracer->ended[0].attributes.at("messaging.operation"), "process");
  EXPECT_EQ(tracer->ended[0].attributes.at("idem.store"), "redis");
  EXPECT_EQ(TracingObserver(nullptr).start_span("x"), nullptr);
}

TEST(Trace, AnnotateUsesSemanticConventionNames) {
  auto tracer = std::make_shared<FakeTracer>();
  const ClaimOutcome retry = acquired(AcquireKind::kRetry, 3, 9);
  {
    auto span = tracer->start_span(trace::kSpanClaim);
    trace::annotate_claim(*span, {"billing", "idempotency:events:billing:e1", "e1", "t", &retry});
  }
  {
    auto span = tracer->start_span(trace::kSpanHandler);
    trace::annotate_handler(*span, HandlerOutcome::kFailedRetryable);
  }
  ASSERT_EQ(tracer->ended.size(), 2u);
  const auto& claim = tracer->ended[0].attributes;
  EXPECT_EQ(claim.at("messaging.message.id"), "e1");
  EXPECT_EQ(claim.at("idem.key"), "idempotency:events:billing:e1");
  EXPECT_EQ(claim.at("idem.scope"), "billing");
  EXPECT_EQ(claim.at("idem.outcome"), "retry");
  EXPECT_EQ(claim.at("idem.attempt"), "3");
  EXPECT_EQ(claim.at("idem.token"), "9");
  EXPECT_EQ(tracer->ended[1].attributes.at("idem.outcome"), "failed_retryable");
  EXPECT_EQ(tracer->ended[1].attributes.at("error.type"), "failed_retryable");
  EXPECT_EQ(tracer->ended[1].error, "failed_retryable");
  EXPECT_EQ(trace::outcome_name(nullptr), "store_error");
}

// Records every call, to check the fan-out.
struct Recorder final : Observer {
  int store_calls = 0, claims = 0, handlers = 0, fail_opens = 0;
  void on_store_call(std::string_view, StoreOp, std::chrono::nanoseconds, const Error*) override { ++store_calls; }
  void on_claim(const ClaimObservation&) override { ++claims; }
  void on_handler(std::string_view, HandlerOutcome, std::chrono::nanoseconds) override { ++handlers; }
  void on_fail_open(std::string_view, const Error&) override { ++fail_opens; }
};

TEST(CompositeObserver, FansOutCallsAndSpans) {
  auto a = std::make_shared<Recorder>();
  auto b = std::make_shared<Recorder>();
  auto tracer1 = std::make_shared<FakeTracer>();
  auto tracer2 = std::make_shared<FakeTracer>();
  CompositeObserver all(
      {a, nullptr, b, std::make_shared<TracingObserver>(tracer1), std::make_shared<TracingObserver>(tracer2)});
  const ClaimOutcome fresh = acquired(AcquireKind::kNew, 1, 1);
  all.on_store_call("memory", StoreOp::kClaim, {}, nullptr);
  all.on_claim({"", "k", "e", "", &fresh});
  all.on_handler("", HandlerOutcome::kCompleted, {});
  all.on_fail_open("", Error(ErrorCode::kUnavailable, "x"));
  for (const auto& r : {a, b}) {
    EXPECT_EQ(r->store_calls, 1);
    EXPECT_EQ(r->claims, 1);
    EXPECT_EQ(r->handlers, 1);
    EXPECT_EQ(r->fail_opens, 1);
  }
  {
    auto span = all.start_span("idem.claim");
    ASSERT_NE(span, nullptr);
    span->set_attribute("idem.key", "k");
  }
  ASSERT_EQ(tracer1->ended.size(), 1u);
  ASSERT_EQ(tracer2->ended.size(), 1u);
  EXPECT_EQ(tracer1->ended[0].attributes.at("idem.key"), "k");
  EXPECT_EQ(tracer2->ended[0].attributes.at("idem.key"), "k");
  EXPECT_EQ(CompositeObserver({a, b}).start_span("idem.claim"), nullptr);
}

TEST(CompositeObserver, TracesAndCountsTheRealGuard) {
  auto tracer = std::make_shared<FakeTracer>();
  auto metrics = std::make_shared<MetricsRegistry>();
  Captured captured;
  auto logs = std::make_shared<LoggingObserver>(
      LoggingOptions{.min_level = LogLevel::kDebug, .sink = captured.sink(), .timestamps = false});
  CheckerOptions options;
  options.observer = std::make_shared<CompositeObserver>(
      std::vector<std::shared_ptr<Observer>>{metrics, logs, std::make_shared<TracingObserver>(tracer)});
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create(), options);
  IdempotentEventProcessor processor(checker, {.scope = "billing", .heartbeat = false});
  Envelope envelope;
  envelope.event_id = "e1";
  {
    auto ctx = processor.process(envelope);
    ctx.mark_completed("ok");
  }
  (void)processor.process(envelope);

  EXPECT_EQ(metrics->counter_value("idem_claims_total", R"(scope="billing",store="memory")"), 2u);
  // One claim line each, one handler line.
  ASSERT_EQ(captured.lines.size(), 3u);
  EXPECT_NE(captured.lines[0].second.find("idem.outcome=new"), std::string::npos);
  EXPECT_NE(captured.lines[1].second.find("idem.outcome=completed"), std::string::npos);
  EXPECT_NE(captured.lines[2].second.find("idem.outcome=duplicate_completed"), std::string::npos);
  // The checker opened a claim span per claim, with OpenTelemetry names.
  std::vector<FakeTracer::Ended> claims;
  for (const auto& span : tracer->ended) {
    if (span.name == "idem.claim") claims.push_back(span);
  }
  ASSERT_EQ(claims.size(), 2u);
  EXPECT_EQ(claims[0].attributes.at("messaging.message.id"), "e1");
  EXPECT_EQ(claims[0].attributes.at("messaging.operation"), "process");
  EXPECT_TRUE(claims[0].attributes.count("idem.token"));
  EXPECT_EQ(claims[0].attributes.at("idem.outcome"), "new");
  EXPECT_EQ(claims[1].attributes.at("idem.outcome"), "duplicate_completed");
  // The acquired claim also got a handler span (ended at the verdict) and a
  // completion span; the duplicate got neither.
  std::vector<std::string> others;
  for (const auto& span : tracer->ended) {
    if (span.name != "idem.claim") others.push_back(span.name);
  }
  EXPECT_EQ(others, (std::vector<std::string>{"idem.complete", "idem.handler"}));
  for (const auto& span : tracer->ended) {
    if (span.name == "idem.handler") {
      EXPECT_EQ(span.attributes.at("idem.outcome"), "completed");
    }
  }
}

}  // namespace
}  // namespace idem
