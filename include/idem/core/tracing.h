/// @file idem/core/tracing.h
/// @brief Span and attribute names, a Tracer adapter, a logging observer and
/// CompositeObserver.
///
/// Tracing and structured logging on top of the Observer interface
/// (observer.h): span and attribute names, a Tracer adapter for your tracing
/// library, a logging observer (the example implementation) and a
/// CompositeObserver that fans out to several observers.
///
/// Spans: the checker, guard and wrapper open "idem.claim", "idem.handler" and
/// "idem.complete" through Observer::start_span(). Attribute names follow the
/// OpenTelemetry semantic conventions for messaging where one exists
/// (messaging.message.id, messaging.system, messaging.operation, error.type),
/// and are ours otherwise (idem.outcome, idem.attempt, idem.token, idem.key).
///
/// @code
/// // Metrics, plus a log line per outcome on stderr (logfmt):
/// auto metrics = std::make_shared<idem::MetricsRegistry>();
/// auto logs = std::make_shared<idem::LoggingObserver>();
/// auto observer = std::make_shared<idem::CompositeObserver>(
///     std::vector<std::shared_ptr<idem::Observer>>{metrics, logs});
/// auto checker = idem::IdempotencyChecker::from_url(url, {.observer = observer}).value();
///
/// // Your tracing library: implement Tracer, wrap it.
/// class OtelTracer : public idem::Tracer { ... };
/// auto traced = std::make_shared<idem::TracingObserver>(std::make_shared<OtelTracer>(),
///                                                       idem::TracingOptions{.messaging_system = "kafka"});
/// @endcode
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

/// Span and attribute names. Use these rather than literals so that every
/// Idem span looks the same in the tracing backend.
namespace trace {
// Span names.

/// The claim of an event's key (one store call).
inline constexpr std::string_view kSpanClaim = "idem.claim";
/// The handler's run, from acquisition to its verdict (guard and wrapper).
inline constexpr std::string_view kSpanHandler = "idem.handler";
/// The write of a handler's result (Store::complete()).
inline constexpr std::string_view kSpanComplete = "idem.complete";

// OpenTelemetry semantic conventions (messaging, general).

/// The messaging system: "kafka", "nats", "http", ... (TracingOptions::messaging_system).
inline constexpr std::string_view kMessagingSystem = "messaging.system";
/// The event id (Envelope::event_id).
inline constexpr std::string_view kMessagingMessageId = "messaging.message.id";
/// Always "process" on Idem's spans.
inline constexpr std::string_view kMessagingOperation = "messaging.operation";
/// The subject or topic the message came from (set by the NATS consumer).
inline constexpr std::string_view kMessagingDestination = "messaging.destination.name";
/// An ErrorCode name (to_string(ErrorCode)) or a handler outcome name.
inline constexpr std::string_view kErrorType = "error.type";

// Idem's own.

/// The outcome of a claim or a handler: see outcome_name().
inline constexpr std::string_view kOutcome = "idem.outcome";
/// Integer: the claim's attempt, 1 for the first.
inline constexpr std::string_view kAttempt = "idem.attempt";
/// Integer: the fencing token of an acquired claim.
inline constexpr std::string_view kToken = "idem.token";
/// The full store key (logs: only with LoggingOptions::include_keys).
inline constexpr std::string_view kKey = "idem.key";
/// The handler's key scope, when it has one.
inline constexpr std::string_view kScope = "idem.scope";
/// The store kind, such as "redis" (TracingOptions::store).
inline constexpr std::string_view kStore = "idem.store";
/// Envelope::event_type, when set.
inline constexpr std::string_view kEventType = "idem.event_type";
/// Logs only: the duration of a store call or handler, in milliseconds.
inline constexpr std::string_view kLatencyMs = "idem.latency_ms";

/// outcome_name() is the value of idem.outcome for a claim: "new", "takeover",
/// "retry", "duplicate_completed", "duplicate_in_progress",
/// "duplicate_failed" or "mismatch"; "store_error" for a null outcome.
std::string_view outcome_name(const ClaimOutcome* outcome) noexcept;
/// The value of idem.outcome for a handler: "completed", "failed_retryable",
/// "failed_terminal", "lease_lost" or "abandoned".
std::string_view outcome_name(HandlerOutcome outcome) noexcept;

/// annotate_claim() sets the attributes of an "idem.claim" span from an
/// observation: message id, key, scope, outcome, and attempt/token when
/// acquired.
void annotate_claim(SpanScope& span, const ClaimObservation& observation);
/// annotate_handler() sets idem.outcome (and error.type for failures).
void annotate_handler(SpanScope& span, HandlerOutcome outcome);
}  // namespace trace

/// Tracer is what an application implements to bridge to its tracing library
/// (OpenTelemetry, Jaeger, ...): open a span as a child of the current one and
/// end it when the returned scope is destroyed. Called on the thread that
/// processes the event; must be thread-safe.
class Tracer {
 public:
  virtual ~Tracer() = default;
  /// Returns null for "not traced" (sampling decided against it).
  virtual std::unique_ptr<SpanScope> start_span(std::string_view name) = 0;
};

/// Options of TracingObserver: attributes set on every span.
struct TracingOptions {
  /// messaging.system on every span; empty: not set.
  std::string messaging_system{};
  /// idem.store on every span; empty: not set.
  std::string store{};
};

/// TracingObserver forwards Observer::start_span() to a Tracer and sets the
/// attributes common to every span (messaging.system, messaging.operation =
/// "process", idem.store). Everything else it leaves to the caller.
class TracingObserver final : public Observer {
 public:
  /// Forwards to `tracer`; a null tracer traces nothing.
  TracingObserver(std::shared_ptr<Tracer> tracer, TracingOptions options = {});
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

 private:
  std::shared_ptr<Tracer> tracer_;
  TracingOptions options_;
};

/// Severity of a LoggingObserver line, in increasing order.
enum class LogLevel : std::uint8_t {
  kDebug = 0,  ///< routine outcomes: new claims, replays, completions
  kInfo = 1,   ///< worth knowing: takeovers, retries, in-progress and failed duplicates
  kWarn = 2,   ///< needs a look: mismatches, handler failures, lease lost, store errors
  kError = 3,  ///< fail-open executions
  kOff = 4,    ///< as LoggingOptions::min_level: log nothing
};
/// "debug", "info", "warn", "error" or "off".
std::string_view to_string(LogLevel level) noexcept;

/// The line format of LoggingObserver.
enum class LogFormat : std::uint8_t {
  kLogfmt,  ///< ts=... level=info msg="idem claim" idem.outcome=new ...
  kJson,    ///< {"ts":"...","level":"info","msg":"idem claim","idem.outcome":"new",...}
};

/// A log line, without a trailing newline, and its level.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;

/// Options of LoggingObserver.
struct LoggingOptions {
  /// logfmt (default) or one JSON object per line.
  LogFormat format = LogFormat::kLogfmt;
  /// Lines below this level are not even formatted. kOff disables the
  /// observer (a single comparison per call).
  LogLevel min_level = LogLevel::kInfo;
  /// Where lines go. Empty: stderr, one write per line (lines of concurrent
  /// threads never interleave).
  LogSink sink{};
  /// Include idem.key (the full store key). Turn off when keys carry personal
  /// data and KeyOptions::hash_keys is not set.
  bool include_keys = true;
  /// Prefix each line with ts=<RFC 3339 UTC, ms>.
  bool timestamps = true;
  /// Also log every span (at debug level) with its duration and attributes:
  /// a poor man's tracer, useful in development.
  bool log_spans = false;
};

/// LoggingObserver writes one structured line per outcome:
///
/// | level | lines                                                        |
/// |-------|--------------------------------------------------------------|
/// | debug | new claims, completed-duplicate replays, handler completions |
/// | info  | takeovers, retries, in-progress and failed duplicates        |
/// | warn  | mismatches, handler failures, lease lost, store errors       |
/// | error | fail-open executions (the handler ran unprotected)           |
class LoggingObserver final : public Observer {
 public:
  /// Logs as `options` say (by default: logfmt, info and above, stderr).
  explicit LoggingObserver(LoggingOptions options = {});

  void on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                     const Error* error) override;
  void on_claim(const ClaimObservation& observation) override;
  void on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) override;
  void on_fail_open(std::string_view scope, const Error& error) override;
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

  /// The options given at construction.
  const LoggingOptions& options() const noexcept { return options_; }

 private:
  bool enabled(LogLevel level) const noexcept { return level >= options_.min_level && level != LogLevel::kOff; }
  LoggingOptions options_;
};

/// CompositeObserver calls each observer in order. start_span() opens a span
/// in every observer that traces and returns one scope that forwards
/// attributes to all of them (null when none traces).
class CompositeObserver final : public Observer {
 public:
  /// Fans out to `observers`, in this order; null entries are dropped.
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
