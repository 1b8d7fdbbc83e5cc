// File: idem/core/tracing.h
//
// Tracing and structured logging on top of the Observer interface
// (observer.h): span and attribute names, a Tracer adapter for your tracing
// library, a logging observer (the example implementation) and a
// CompositeObserver that fans out to several observers.
//
// Spans: the checker, guard and wrapper open "idem.claim", "idem.handler" and
// "idem.complete" through Observer::start_span(). Attribute names follow the
// OpenTelemetry semantic conventions for messaging where one exists
// (messaging.message.id, messaging.system, messaging.operation, error.type),
// and are ours otherwise (idem.outcome, idem.attempt, idem.token, idem.key).
//
//   // Metrics, plus a log line per outcome on stderr (logfmt):
//   auto metrics = std::make_shared<idem::MetricsRegistry>();
//   auto logs = std::make_shared<idem::LoggingObserver>();
//   auto observer = std::make_shared<idem::CompositeObserver>(
//       std::vector<std::shared_ptr<idem::Observer>>{metrics, logs});
//   auto checker = idem::IdempotencyChecker::from_url(url, {.observer = observer}).value();
//
//   // Your tracing library: implement Tracer, wrap it.
//   class OtelTracer : public idem::Tracer { ... };
//   auto traced = std::make_shared<idem::TracingObserver>(std::make_shared<OtelTracer>(),
//                                                         idem::TracingOptions{.messaging_system = "kafka"});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/observer.h"
#include "idem/core/record.h"

namespace idem {

// Span and attribute names. Use these rather than literals so that every
// Idem span looks the same in the tracing backend.
namespace trace {
// Span names.
inline constexpr std::string_view kSpanClaim = "idem.claim";
inline constexpr std::string_view kSpanHandler = "idem.handler";
inline constexpr std::string_view kSpanComplete = "idem.complete";

// OpenTelemetry semantic conventions (messaging, general).
inline constexpr std::string_view kMessagingSystem = "messaging.system";         // "kafka", "nats", "http"...
inline constexpr std::string_view kMessagingMessageId = "messaging.message.id";  // the event id
inline constexpr std::string_view kMessagingOperation = "messaging.operation";   // "process"
inline constexpr std::string_view kMessagingDestination = "messaging.destination.name";
inline constexpr std::string_view kErrorType = "error.type";  // an ErrorCode name or exception type

// Idem's own.
inline constexpr std::string_view kOutcome = "idem.outcome";       // see outcome_name()
inline constexpr std::string_view kAttempt = "idem.attempt";       // int: 1 for the first claim
inline constexpr std::string_view kToken = "idem.token";           // int: the fencing token
inline constexpr std::string_view kKey = "idem.key";               // the full store key
inline constexpr std::string_view kScope = "idem.scope";           // the handler scope
inline constexpr std::string_view kStore = "idem.store";           // the store kind
inline constexpr std::string_view kEventType = "idem.event_type";  // Envelope::event_type
inline constexpr std::string_view kLatencyMs = "idem.latency_ms";  // logs only: duration

// outcome_name() is the value of idem.outcome for a claim: "new", "takeover",
// "retry", "duplicate_completed", "duplicate_in_progress",
// "duplicate_failed" or "mismatch"; "store_error" for a null outcome.
std::string_view outcome_name(const ClaimOutcome* outcome) noexcept;
// The value of idem.outcome for a handler: "completed", "failed_retryable",
// "failed_terminal", "lease_lost" or "abandoned".
std::string_view outcome_name(HandlerOutcome outcome) noexcept;

// annotate_claim() sets the attributes of an "idem.claim" span from an
// observation: message id, key, scope, outcome, and attempt/token when
// acquired.
void annotate_claim(SpanScope& span, const ClaimObservation& observation);
// annotate_handler() sets idem.outcome (and error.type for failures).
void annotate_handler(SpanScope& span, HandlerOutcome outcome);
}  // namespace trace

// Tracer is what an application implements to bridge to its tracing library
// (OpenTelemetry, Jaeger, ...): open a span as a child of the current one and
// end it when the returned scope is destroyed. Called on the thread that
// processes the event; must be thread-safe.
class Tracer {
 public:
  virtual ~Tracer() = default;
  // Returns null for "not traced" (sampling decided against it).
  virtual std::unique_ptr<SpanScope> start_span(std::string_view name) = 0;
};

struct TracingOptions {
  // messaging.system on every span; empty: not set.
  std::string messaging_system{};
  // idem.store on every span; empty: not set.
  std::string store{};
};

// TracingObserver forwards Observer::start_span() to a Tracer and sets the
// attributes common to every span (messaging.system, messaging.operation =
// "process", idem.store). Everything else it leaves to the caller.
class TracingObserver final : public Observer {
 public:
  TracingObserver(std::shared_ptr<Tracer> tracer, TracingOptions options = {});
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

 private:
  std::shared_ptr<Tracer> tracer_;
  TracingOptions options_;
};

enum class LogLevel : std::uint8_t { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };
std::string_view to_string(LogLevel level) noexcept;

enum class LogFormat : std::uint8_t {
  kLogfmt,  // ts=... level=info msg="idem claim" idem.outcome=new ...
  kJson,    // {"ts":"...","level":"info","msg":"idem claim","idem.outcome":"new",...}
};

// A log line, without a trailing newline, and its level.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;

struct LoggingOptions {
  LogFormat format = LogFormat::kLogfmt;
  // Lines below this level are not even formatted. kOff disables the
  // observer (a single comparison per call).
  LogLevel min_level = LogLevel::kInfo;
  // Where lines go. Empty: stderr, one write per line (lines of concurrent
  // threads never interleave).
  LogSink sink{};
  // Include idem.key (the full store key). Turn off when keys carry personal
  // data and KeyOptions::hash_keys is not set.
  bool include_keys = true;
  // Prefix each line with ts=<RFC 3339 UTC, ms>.
  bool timestamps = true;
  // Also log every span (at debug level) with its duration and attributes:
  // a poor man's tracer, useful in development.
  bool log_spans = false;
};

// LoggingObserver writes one structured line per outcome:
//   debug  new claims, completed-duplicate replays, handler completions
//   info   takeovers, retries, in-progress and failed duplicates
//   warn   mismatches, handler failures, lease lost, store errors
//   error  fail-open executions (the handler ran unprotected)
class LoggingObserver final : public Observer {
 public:
  explicit LoggingObserver(LoggingOptions options = {});

  void on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                     const Error* error) override;
  void on_claim(const ClaimObservation& observation) override;
  void on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) override;
  void on_fail_open(std::string_view scope, const Error& error) override;
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

  const LoggingOptions& options() const noexcept { return options_; }

 private:
  bool enabled(LogLevel level) const noexcept { return level >= options_.min_level && level != LogLevel::kOff; }
  LoggingOptions options_;
};

// CompositeObserver calls each observer in order. start_span() opens a span
// in every observer that traces and returns one scope that forwards
// attributes to all of them (null when none traces).
class CompositeObserver final : public Observer {
 public:
  explicit CompositeObserver(std::vector<std::shared_ptr<Observer>> observers);

  void on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                     const Error* error) override;
  void on_claim(const ClaimObservation& observation) override;
  void on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) override;
  void on_fail_open(std::string_view scope, const Error& error) override;
  void on_circuit_state(std::string_view store_kind, CircuitState state) override;
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

 private:
  std::vector<std::shared_ptr<Observer>> observers_;
};

}  // namespace idem
