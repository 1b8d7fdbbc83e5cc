/// @file idem/core/observer.h
/// @brief Observer: the hook through which metrics, tracing and logging see
/// every claim, store call and handler.
///
/// Observer is how metrics, tracing and logging see what Idem does. The
/// checker, guard and wrapper call it after the store answered and never while
/// holding an internal lock: on the calling thread for the synchronous API,
/// and on the thread that runs the completion for the asynchronous one (a
/// store I/O thread on Redis and PostgreSQL). An implementation may block
/// briefly but should not call back into the same checker.
///
/// Every method has an empty default, so an implementation overrides only what
/// it needs. Implementations must be thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "idem/core/error.h"
#include "idem/core/record.h"
#include "idem/core/store.h"

namespace idem {

/// StoreOp names a store call for latency and error accounting.
enum class StoreOp : std::uint8_t {
  kClaim,       ///< Store::claim()
  kClaimMany,   ///< Store::claim_many()
  kComplete,    ///< Store::complete()
  kFail,        ///< Store::fail()
  kExtend,      ///< Store::extend() (heartbeats included)
  kCheckpoint,  ///< Store::checkpoint()
  kGet,         ///< Store::get()
  kRemove,      ///< Store::remove()
};
/// The lower-case name of `op` ("claim", "claim_many", ...), the `op` label of
/// the metrics.
std::string_view to_string(StoreOp op) noexcept;

/// What Observer::on_claim() is told about one decided (or failed) claim.
/// The views are valid only during the call.
struct ClaimObservation {
  std::string_view scope{};               ///< the key scope; empty when none
  std::string_view key{};                 ///< the full store key
  std::string_view event_id{};            ///< Envelope::event_id
  std::string_view event_type{};          ///< Envelope::event_type; may be empty
  const ClaimOutcome* outcome = nullptr;  ///< null when the store failed
};

/// HandlerOutcome is how a handler execution ended.
enum class HandlerOutcome : std::uint8_t {
  kCompleted,        ///< result stored
  kFailedRetryable,  ///< error stored, next delivery runs again
  kFailedTerminal,   ///< error stored and replayed to duplicates
  kLeaseLost,        ///< a newer owner took over; nothing stored
  kAbandoned,        ///< guard left without completion: FAILED, retryable
};
/// "completed", "failed_retryable", "failed_terminal", "lease_lost" or
/// "abandoned".
std::string_view to_string(HandlerOutcome outcome) noexcept;

/// SpanScope is an open tracing span; ending it is destroying it.
class SpanScope {
 public:
  virtual ~SpanScope() = default;
  /// Sets a string attribute (names: idem::trace). The views are valid only
  /// during the call: copy them.
  virtual void set_attribute(std::string_view name, std::string_view value) = 0;
  /// Sets an integer attribute (idem.attempt, idem.token, ...).
  virtual void set_attribute(std::string_view name, std::int64_t value) = 0;
  /// Marks the span as failed with `message` (in OpenTelemetry: status
  /// Error).
  virtual void set_error(std::string_view message) = 0;
};

/// The interface metrics, tracing and logging implement to see what Idem
/// does; see the file comment for threads. MetricsRegistry, LoggingObserver,
/// TracingObserver and CompositeObserver implement it; give one to
/// CheckerOptions::observer.
class Observer {
 public:
  virtual ~Observer() = default;

  /// A store call finished after `latency`; `error` is null on success.
  virtual void on_store_call(std::string_view /*store_kind*/, StoreOp /*op*/, std::chrono::nanoseconds /*latency*/,
                             const Error* /*error*/) {}
  /// A claim was decided (or failed: observation.outcome is null).
  virtual void on_claim(const ClaimObservation& /*observation*/) {}
  /// A handler ran and ended with `outcome` after `latency`.
  virtual void on_handler(std::string_view /*scope*/, HandlerOutcome /*outcome*/,
                          std::chrono::nanoseconds /*latency*/) {}
  /// The store was unavailable and the fail-open policy ran the handler anyway.
  virtual void on_fail_open(std::string_view /*scope*/, const Error& /*error*/) {}

  /// The store's circuit breaker moved to `state` (seen after a store call).
  virtual void on_circuit_state(std::string_view /*store_kind*/, CircuitState /*state*/) {}

  /// Opens a span named `name` ("idem.claim", "idem.handler", "idem.complete").
  /// Return null for "not traced" (the default).
  virtual std::unique_ptr<SpanScope> start_span(std::string_view /*name*/) { return nullptr; }
};

}  // namespace idem
