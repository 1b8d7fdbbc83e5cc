/// @file idem/core/handler.h
/// @brief The wrapper pattern: idempotent_event_handler(),
/// idempotent_async_event_handler() and process_with_idempotency().
///
/// idempotent_event_handler(handler, options) returns a handler that runs the
/// original at most once per key and replays its result to duplicates;
/// idempotent_async_event_handler() (below) does the same for handlers that
/// finish later, without blocking. A handler that throws marks the record
/// FAILED and the exception propagates, so the next delivery can run it again
/// (or, for a TerminalError, every duplicate gets the stored error).
///
/// A normal return always means "handled: ack the message". A duplicate whose
/// original is still running waits (ProcessorOptions::wait_for_in_progress,
/// kDefaultInProgressWait = 5 s unless set) and then either returns the
/// original's result or throws EventInProgressError: never ack that one.
///
/// @code
/// auto handle = idem::idempotent_event_handler(
///     [](const idem::Envelope& e) { return charge(e); },  // returns std::string
///     {.processor = {.scope = "billing"}});
/// try {
///   std::optional<std::string> result = handle(envelope);  // cached on replays
///   msg.ack();
/// } catch (const idem::EventInProgressError&) {
///   msg.nak_with_delay(std::chrono::seconds(5));  // the original still runs
/// }
/// @endcode
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "idem/core/checker.h"
#include "idem/core/processor.h"

namespace idem {

/// Options of the wrapper (idempotent_event_handler(),
/// idempotent_async_event_handler(), process_with_idempotency()).
struct HandlerOptions {
  /// The guard's options: scope, key extractor, in-progress wait, heartbeat,
  /// failure classifier, executor.
  ProcessorOptions processor{};
  /// true: a completed duplicate returns quietly. false: it throws
  /// DuplicateEventError. (An in-progress duplicate always throws
  /// EventInProgressError, whatever this says.)
  bool skip_on_duplicate = true;
  /// true: a completed duplicate returns the cached result. false: nullopt.
  bool return_cached_result = true;
  /// The checker to use; null means get_idempotency_checker().
  std::shared_ptr<IdempotencyChecker> checker{};
};

/// What a guarded execution did. Every value means "handled: ack it"; a
/// duplicate whose original still runs is an EventInProgressError instead.
enum class Disposition : std::uint8_t {
  kExecuted,     ///< the handler ran now and its result was stored
  kReplayed,     ///< a duplicate of a completed event: the cached result
  kUnprotected,  ///< store down, fail-open: the handler ran without a claim
};

/// What process_with_idempotency() did with one event.
struct ProcessResult {
  Disposition disposition = Disposition::kExecuted;  ///< how the event was handled
  /// The handler's result, fresh or cached; nullopt for a replay when
  /// return_cached_result is false.
  std::optional<std::string> result{};
  std::string key{};  ///< the store key the event was processed under
};

/// The handler shape process_with_idempotency() runs: returns the result to
/// store (usually JSON). The wrapper adapts other shapes to it.
using StringHandler = std::function<std::string(const Envelope&, ProcessingContext&)>;

/// process_with_idempotency() runs `handler` once per key through `processor`
/// and says what happened. A duplicate whose original is still running waits
/// (processor.options().wait_for_in_progress, unset: kDefaultInProgressWait)
/// and then replays, runs, or throws EventInProgressError. Terminal failures
/// replay as TerminalError; mismatches, invalid envelopes and store outages
/// throw their typed errors.
ProcessResult process_with_idempotency(IdempotentEventProcessor& processor, const Envelope& envelope,
                                       const StringHandler& handler);

/// The same with a one-off processor over `options.checker`, applying all of
/// `options` exactly as the wrapper does: with skip_on_duplicate = false a
/// completed duplicate throws DuplicateEventError, with return_cached_result =
/// false its result is nullopt.
ProcessResult process_with_idempotency(const Envelope& envelope, const StringHandler& handler,
                                       const HandlerOptions& options = {});

namespace detail {
/// Adapts the handler shapes users write to StringHandler: (env) or
/// (env, ctx), returning std::string or void.
template <typename F>
StringHandler adapt_handler(F handler) {
  return [handler = std::move(handler)](const Envelope& envelope, ProcessingContext& ctx) -> std::string {
    if constexpr (std::is_invocable_v<F&, const Envelope&, ProcessingContext&>) {
      using R = std::invoke_result_t<F&, const Envelope&, ProcessingContext&>;
      if constexpr (std::is_void_v<R>) {
        handler(envelope, ctx);
        return "null";
      } else {
        return std::string(handler(envelope, ctx));
      }
    } else {
      static_assert(std::is_invocable_v<F&, const Envelope&>,
                    "handler must be callable as f(const Envelope&) or f(const Envelope&, ProcessingContext&)");
      using R = std::invoke_result_t<F&, const Envelope&>;
      if constexpr (std::is_void_v<R>) {
        handler(envelope);
        return "null";
      } else {
        return std::string(handler(envelope));
      }
    }
  };
}

std::function<std::optional<std::string>(const Envelope&)> make_idempotent_handler(StringHandler handler,
                                                                                   HandlerOptions options);
}  // namespace detail

/// idempotent_event_handler() wraps `handler` (see the file comment). The
/// returned function is thread-safe when the handler is, and cheap to copy.
template <typename F>
std::function<std::optional<std::string>(const Envelope&)> idempotent_event_handler(F handler,
                                                                                    HandlerOptions options = {}) {
  return detail::make_idempotent_handler(detail::adapt_handler(std::move(handler)), std::move(options));
}

// --- Asynchronous handlers ----------------------------------------------------

/// AsyncHandlerResult is what an asynchronous wrapper hands its callback:
/// what the synchronous wrapper would have returned, or the exception it
/// would have thrown (DuplicateEventError, EventInProgressError,
/// TerminalError for a replayed terminal failure, KeyMismatchError,
/// StoreUnavailableError, LeaseLostError, ResultTooLargeError, or the
/// handler's own exception).
struct AsyncHandlerResult {
  std::optional<std::string> result{};               ///< fresh or cached result when there is no error
  std::exception_ptr error{};                        ///< set when the synchronous wrapper would have thrown
  Disposition disposition = Disposition::kExecuted;  ///< meaningful when there is no error
  std::string key{};                                 ///< the store key, once known
};
/// Receives the AsyncHandlerResult of an asynchronous wrapper call, exactly
/// once.
using AsyncResultCallback = std::function<void(AsyncHandlerResult)>;
/// What idempotent_async_event_handler() returns: call it with an envelope
/// and a callback; it returns at once.
using AsyncIdempotentHandler = std::function<void(const Envelope&, AsyncResultCallback)>;

namespace detail {
/// Adapts the asynchronous handler shapes users write: (env, completion) or
/// (env, ctx, completion).
template <typename F>
IdempotentEventProcessor::AsyncHandler adapt_async_handler(F handler) {
  using Completion = IdempotentEventProcessor::Completion;
  if constexpr (std::is_invocable_v<F&, const Envelope&, ProcessingContext&, Completion>) {
    return IdempotentEventProcessor::AsyncHandler(std::move(handler));
  } else {
    static_assert(std::is_invocable_v<F&, const Envelope&, Completion>,
                  "handler must be callable as f(const Envelope&, Completion) or "
                  "f(const Envelope&, ProcessingContext&, Completion)");
    return [handler = std::move(handler)](const Envelope& envelope, ProcessingContext&, Completion completion) mutable {
      handler(envelope, std::move(completion));
    };
  }
}

AsyncIdempotentHandler make_async_idempotent_handler(IdempotentEventProcessor::AsyncHandler handler,
                                                     HandlerOptions options);
}  // namespace detail

/// idempotent_async_event_handler() is the wrapper for handlers that finish
/// later: the handler gets a Completion and calls succeed(result) or
/// fail(exception) when its work is done, from any thread; the wrapped
/// function returns at once and reports through its callback, exactly once.
/// It is built on IdempotentEventProcessor::process_async(): it never blocks,
/// so one thread can keep hundreds of events in flight on Redis or
/// PostgreSQL. Read the warning at ProcessorOptions::handler_executor about
/// where the handler and the callback run. Unlike the synchronous wrapper it
/// does not wait for an in-progress original: such a duplicate is an
/// EventInProgressError at once (nak it with a delay).
///
/// @code
/// auto charge = idem::idempotent_async_event_handler(
///     [&http](const idem::Envelope& e, idem::IdempotentEventProcessor::Completion done) {
///       http.post_async("/charge", e.payload, [done](Response r) {
///         if (r.ok()) done.succeed(r.body);
///         else done.fail(std::make_exception_ptr(std::runtime_error(r.error)));
///       });
///     },
///     {.processor = {.scope = "billing"}});
/// charge(envelope, [msg](idem::AsyncHandlerResult r) { r.error ? msg.nak() : msg.ack(); });
/// @endcode
template <typename F>
AsyncIdempotentHandler idempotent_async_event_handler(F handler, HandlerOptions options = {}) {
  return detail::make_async_idempotent_handler(detail::adapt_async_handler(std::move(handler)), std::move(options));
}

}  // namespace idem
