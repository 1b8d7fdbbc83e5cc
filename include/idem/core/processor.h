/// @file idem/core/processor.h
/// @brief IdempotentEventProcessor, the guard pattern: a scoped claim with
/// heartbeat, checkpoints and a verdict; also its asynchronous form.
///
/// IdempotentEventProcessor is the guard pattern: process() claims the key and
/// returns a ProcessingContext. Run your side effect only when
/// ctx.should_process(); call ctx.mark_completed(result) when done. Leaving the
/// scope without completing (early return, exception) marks the record FAILED
/// (retryable), so the next delivery runs again.
///
/// @code
/// idem::IdempotentEventProcessor processor(checker, {.scope = "billing"});
/// auto ctx = processor.process(envelope);
/// if (ctx.is_duplicate()) return ctx.cached_result();
/// ctx.checkpoint("charged", charge_id);  // a takeover resumes from here
/// ctx.mark_completed(R"({"charge":"ch_1"})");
/// @endcode
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "idem/core/checker.h"
#include "idem/core/envelope.h"
#include "idem/core/error.h"
#include "idem/core/limits.h"
#include "idem/core/record.h"

namespace idem {

namespace detail {
struct ContextState;
struct ProcessorCore;
struct CompletionHandle;
struct GuardAccess;
}  // namespace detail

/// TerminalError: throw it (or a subclass) from a handler to say "retrying
/// will not help". The error is stored and replayed to every duplicate.
class TerminalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// DuplicateEventError (kDuplicate) is thrown by the wrapper and by
/// process_with_idempotency(envelope, handler, options) when
/// skip_on_duplicate is false and the event already completed. The message
/// was handled: ack it; cached_result() is the original's result. A
/// duplicate whose original is still running is never a DuplicateEventError
/// but an EventInProgressError.
class DuplicateEventError : public IdemError {
 public:
  /// A kDuplicate error about `key`, whose original ended with `status` and
  /// `cached_result`.
  DuplicateEventError(std::string key, ClaimStatus status, std::optional<std::string> cached_result);
  /// The full store key of the duplicate.
  const std::string& key() const noexcept { return key_; }
  /// The claim status that made it a duplicate: kCompleted.
  ClaimStatus status() const noexcept { return status_; }
  /// The original's stored result (whatever HandlerOptions::return_cached_result says).
  const std::optional<std::string>& cached_result() const noexcept { return cached_result_; }

 private:
  std::string key_;
  ClaimStatus status_;
  std::optional<std::string> cached_result_;
};

/// EventInProgressError (kInProgress, retryable) is thrown by the wrapper and
/// by process_with_idempotency() for a duplicate whose original was still
/// running when the wait (ProcessorOptions::wait_for_in_progress) ended. It
/// is never a success: do not ack the message, let it be redelivered later
/// (NATS: nak with a delay; HTTP: 409 Conflict with Retry-After). If the
/// original dies, that redelivery is the only copy of the event left.
///
/// @code
/// try {
///   handle(envelope);
///   msg.ack();
/// } catch (const idem::EventInProgressError& e) {
///   msg.nak_with_delay(std::chrono::seconds(5));
/// }
/// @endcode
class EventInProgressError : public IdemError {
 public:
  /// A kInProgress error about `key`, after waiting `waited` for the
  /// original whose record was last seen as `record`.
  EventInProgressError(std::string key, std::optional<IdempotencyRecord> record, std::chrono::milliseconds waited);
  /// The full store key of the duplicate.
  const std::string& key() const noexcept { return key_; }
  /// The original's record as last seen (its owner's lease, its attempt).
  const std::optional<IdempotencyRecord>& record() const noexcept { return record_; }
  /// How long this delivery waited for the original before giving up.
  std::chrono::milliseconds waited() const noexcept { return waited_; }

 private:
  std::string key_;
  std::optional<IdempotencyRecord> record_;
  std::chrono::milliseconds waited_;
};

/// FailureKind decides whether a handler error lets the next delivery retry.
enum class FailureKind : std::uint8_t {
  kRetryable,  ///< FAILED, retryable: the next delivery runs the handler again
  kTerminal,   ///< FAILED for good: the error is replayed to every duplicate
};

/// Classifies a handler's exception. The default: TerminalError → kTerminal,
/// everything else → kRetryable.
using FailureClassifier = std::function<FailureKind(const std::exception_ptr&)>;
/// The default FailureClassifier: kTerminal for a TerminalError (or a
/// subclass), kRetryable for anything else.
FailureKind default_failure_classifier(const std::exception_ptr& error);

/// kDefaultInProgressWait is how long the wrapper and process_with_idempotency()
/// wait, by default, for the original of an in-progress duplicate before
/// they throw EventInProgressError: long enough for most handlers to finish
/// (the duplicate then replays the result), short enough that the consumer
/// thread and the broker's ack deadline (NATS: 30 s) are not at risk.
inline constexpr std::chrono::milliseconds kDefaultInProgressWait = std::chrono::seconds(5);

/// HandlerExecutor runs a task somewhere else: a thread pool, an event loop
/// (`[&io](std::function<void()> task) { asio::post(io, std::move(task)); }`).
/// It must run every task it accepts exactly once; throwing instead refuses
/// the task (the guard then fails the claim, retryable).
using HandlerExecutor = std::function<void(std::function<void()>)>;

/// Options of IdempotentEventProcessor, per handler; what is per store
/// (TTL, lease, outage policy) is in CheckerOptions.
struct ProcessorOptions {
  /// Replaces the checker's key scope when set (one scope per handler).
  std::optional<std::string> scope{};
  /// Replaces the checker's key extractor when set.
  KeyExtractor key_extractor{};
  /// A duplicate that finds the key in progress waits up to this long for the
  /// original to finish, then claims again: it replays the result, or runs
  /// the handler when the original failed (retryable) or died. 0: do not
  /// wait. Unset: the guard (process()) does not wait, the wrapper and
  /// process_with_idempotency() wait kDefaultInProgressWait. At most
  /// kMaxInProgressWait (1 hour, limits.h). process_async() and the
  /// asynchronous wrapper never wait (they must not block): they report an
  /// in-progress duplicate at once.
  std::optional<std::chrono::milliseconds> wait_for_in_progress{};
  /// Renew the lease in the background while the handler runs.
  bool heartbeat = true;
  /// How often to renew. 0 means a third of the checker's lease; otherwise it
  /// must be shorter than the lease (a slower heartbeat lets the lease lapse).
  std::chrono::milliseconds heartbeat_interval{0};
  FailureClassifier classify_failure{};  ///< empty: default_failure_classifier
  /// Where process_async() (and the asynchronous wrapper) run the handler.
  ///
  /// Empty, the default: inline, on the thread that completed the claim. On
  /// memory:// and SQLite that is the thread that called process_async(), as
  /// before. On Redis and PostgreSQL it is one of the STORE'S I/O THREADS: a
  /// handler that blocks there (a synchronous HTTP call, a database query, a
  /// synchronous Idem call) stalls every other request of that store, and a
  /// synchronous call to the same store fails with kInternal rather than
  /// deadlock. Give such handlers an executor; keep the default for handlers
  /// that only start non-blocking work and call the Completion later.
  ///
  /// Inline is the default because it costs no thread hand-off (the very cost
  /// an event-driven caller uses process_async() to avoid) and because the
  /// caller knows its own event loop or pool; a hidden internal pool would
  /// bound concurrency and add a wake-up per event behind its back.
  HandlerExecutor handler_executor{};

  /// validate() returns kInvalidConfiguration, naming the option, when
  /// wait_for_in_progress is outside [0, kMaxInProgressWait] or
  /// heartbeat_interval outside [0, kMaxLease]. The processor's constructor
  /// throws it as ConfigurationError, and also refuses a heartbeat_interval
  /// not shorter than the checker's lease.
  Status validate() const;
};

/// ProcessingContext is the outcome of one process() call. Move-only; its
/// destructor fails an acquired, unfinished claim (retryable).
class ProcessingContext {
 public:
  /// Takes over the claim of the other context, which is left empty: only
  /// destroying it or assigning to it is allowed afterwards.
  ProcessingContext(ProcessingContext&&) noexcept;
  /// Settles this context's own claim first (as the destructor does), then
  /// takes over the claim of the other one.
  ProcessingContext& operator=(ProcessingContext&&) noexcept;
  ProcessingContext(const ProcessingContext&) = delete;
  ProcessingContext& operator=(const ProcessingContext&) = delete;
  ~ProcessingContext();

  /// should_process() is true when this worker owns the key and must run the
  /// handler (also under fail-open, see is_unprotected()).
  bool should_process() const noexcept;
  /// is_duplicate() is !should_process(): the key was seen before.
  bool is_duplicate() const noexcept { return !should_process(); }
  /// The claim's answer: kAcquired when this worker runs the handler
  /// (fail-open included), otherwise why not.
  ClaimStatus status() const noexcept;
  /// How the key was acquired (new, takeover, retry); meaningful only when
  /// should_process().
  AcquireKind acquire_kind() const noexcept;
  /// True for a duplicate whose original still runs: never ack it, let it be
  /// redelivered later.
  bool in_progress() const noexcept { return status() == ClaimStatus::kInProgress; }
  /// True when this worker acquired the key by taking over an expired lease
  /// (its previous owner died or hung): consider last_checkpoint().
  bool is_takeover() const noexcept;
  /// True when the store was down and the fail-open policy let this run
  /// without a claim: completion is not recorded.
  bool is_unprotected() const noexcept;

  /// The cached result of a completed original (status() kCompleted);
  /// nullopt otherwise.
  const std::optional<std::string>& cached_result() const noexcept;
  /// The stored error of a terminal failure (status() kFailed); nullopt
  /// otherwise.
  const std::optional<std::string>& cached_error() const noexcept;
  /// The record found when not acquired.
  const std::optional<IdempotencyRecord>& record() const noexcept;

  /// The full store key of the event.
  const std::string& key() const noexcept;
  /// The fencing token: pass it to downstream systems that reject stale
  /// writers. 0 when not acquired.
  Token token() const noexcept;
  /// When acquired: 1 for a new key, then +1 per takeover or retry (0 under
  /// fail-open). Not meaningful for duplicates.
  std::uint32_t attempt() const noexcept;
  /// The last checkpoint of an earlier attempt (takeover or retry).
  const std::optional<Checkpoint>& last_checkpoint() const noexcept;

  /// Stores the result: the record becomes COMPLETED. Throws LeaseLostError
  /// when another worker took over, ResultTooLargeError (the record is then
  /// marked FAILED, retryable) or StoreUnavailableError. In a handler run by
  /// process_async(), finish through the Completion instead (this throws
  /// ConfigurationError there).
  void mark_completed(std::string_view result);
  /// Marks the record FAILED. Throws like mark_completed().
  void mark_failed(std::string_view error, FailureKind kind = FailureKind::kRetryable);
  /// Records a recovery point under this worker's token.
  void checkpoint(std::string_view name, std::string_view data);
  /// The same without blocking, for handlers run by process_async(): `done`
  /// runs as the store's *_async contract says (store.h).
  void checkpoint_async(std::string_view name, std::string_view data, StatusCallback done);
  /// Renews the lease now (the heartbeat does this in the background).
  void extend();

  /// True once mark_completed() or mark_failed() succeeded.
  bool finished() const noexcept;

 private:
  friend class IdempotentEventProcessor;
  friend struct detail::GuardAccess;
  explicit ProcessingContext(std::unique_ptr<detail::ContextState> state);
  void release() noexcept;
  std::unique_ptr<detail::ContextState> state_;
};

/// The guard: claims an event's key, keeps the lease alive while the handler
/// runs, and stores its verdict. Thread-safe; one processor per handler
/// (scope), shared by all its threads.
class IdempotentEventProcessor {
 public:
  /// Uses `checker` with `options`. Throws ConfigurationError for a null
  /// checker or invalid options (see ProcessorOptions::validate()).
  explicit IdempotentEventProcessor(std::shared_ptr<IdempotencyChecker> checker, ProcessorOptions options = {});
  /// Contexts and asynchronous calls still in flight hold their own
  /// reference to what they need, so they may outlive the processor.
  ~IdempotentEventProcessor();
  IdempotentEventProcessor(const IdempotentEventProcessor&) = delete;
  IdempotentEventProcessor& operator=(const IdempotentEventProcessor&) = delete;

  /// process() claims the envelope's key. Throws InvalidEnvelopeError for a
  /// bad key, KeyMismatchError for a reused key, StoreUnavailableError when
  /// the store is down under the fail-closed policy. An in-progress duplicate
  /// waits options().wait_for_in_progress (unset: not at all) and is then
  /// returned as such: check ctx.in_progress() and never ack it.
  ProcessingContext process(const Envelope& envelope);
  /// The same, waiting up to `wait_for_in_progress` for an in-progress
  /// original whatever options() say (0: do not wait).
  ProcessingContext process(const Envelope& envelope, std::chrono::milliseconds wait_for_in_progress);

  /// Completion is how a handler run by process_async() gives its verdict,
  /// now or later, from any thread. The first call counts; later ones are
  /// ignored. Calling neither before the last copy is destroyed fails the
  /// claim (FAILED, retryable: "abandoned"). Both return at once: the store
  /// write happens asynchronously, and `on_done` reports how it went.
  class Completion {
   public:
    /// Stores `result` (COMPLETED).
    void succeed(std::string_view result) const;
    /// Marks the record FAILED, terminal or retryable as the processor's
    /// classifier says for `error`.
    void fail(const std::exception_ptr& error) const;

   private:
    friend struct detail::GuardAccess;
    std::shared_ptr<detail::CompletionHandle> handle_;
  };

  /// The outcome reported to an async caller.
  struct AsyncOutcome {
    /// kAcquired: the handler ran now (or, with `unprotected`, without a
    /// claim), or the claim itself failed (then `exception` is set and `key`
    /// is empty). Otherwise the duplicate's status: kCompleted (result is
    /// the cached result), kFailed (error is the stored terminal error),
    /// kInProgress (never ack it: redeliver later), kMismatch (the key was
    /// used with another payload; exception is a KeyMismatchError).
    ClaimStatus status = ClaimStatus::kAcquired;
    std::optional<std::string> result{};  ///< fresh or cached
    std::optional<std::string> error{};   ///< handler or stored error
    /// Set when the handler failed (its own exception; a std::runtime_error
    /// when it dropped its Completion), the verdict could not be stored
    /// (LeaseLostError, ResultTooLargeError, StoreUnavailableError), the
    /// claim failed, or the key was reused (KeyMismatchError).
    std::exception_ptr exception{};
    std::string key{};                          ///< the store key, once known
    std::optional<IdempotencyRecord> record{};  ///< the record found, for duplicates
    bool unprotected = false;                   ///< fail-open ran the handler without a claim
  };
  /// The handler: `envelope` is valid until the handler returns (copy what
  /// the work needs later); `ctx` until the Completion's verdict is stored.
  using AsyncHandler = std::function<void(const Envelope&, ProcessingContext&, Completion)>;
  /// Receives the AsyncOutcome of process_async(), exactly once.
  using AsyncCallback = std::function<void(AsyncOutcome)>;

  /// process_async() claims the envelope's key without blocking, runs
  /// `handler` when this worker acquired it, and reports through `on_done`,
  /// exactly once, what happened. It never waits (not for the store, not for
  /// an in-progress original), so one thread can keep hundreds of events in
  /// flight on a native asynchronous store.
  ///
  /// Threads: the handler runs on options().handler_executor, or inline on
  /// the thread that completed the claim (read the warning there). `on_done`
  /// runs on the thread that completed the last store call (a store I/O
  /// thread on Redis and PostgreSQL; on memory and SQLite the thread that
  /// called process_async() or the Completion; the processor's heartbeat
  /// thread after a retried write), or inline here when nothing was run
  /// (duplicates, errors). Like a store callback, `on_done` must return
  /// quickly and must not block; an exception from it is dropped.
  ///
  /// What the guard promises here is what process() promises: a transient
  /// error of the final write is retried (three times, 50-200 ms apart, from
  /// the heartbeat thread instead of sleeping); a retried completion that
  /// answers kLeaseLost is checked against the record, so that our own
  /// earlier write is not mistaken for a takeover; the lease is renewed
  /// (through extend_async) while the handler runs.
  void process_async(const Envelope& envelope, AsyncHandler handler, AsyncCallback on_done);

  /// The options given at construction.
  const ProcessorOptions& options() const noexcept { return options_; }
  /// The checker every call goes through.
  const std::shared_ptr<IdempotencyChecker>& checker() const noexcept { return checker_; }
  /// What a handler's exception means under this processor's classifier
  /// (ProcessorOptions::classify_failure or default_failure_classifier).
  FailureKind classify(const std::exception_ptr& error) const;

 private:
  friend struct detail::GuardAccess;
  std::shared_ptr<IdempotencyChecker> checker_{};
  ProcessorOptions options_{};
  // What every context of this processor shares (checker, key options,
  // heartbeat, classifier, executor): one reference per event, not five.
  std::shared_ptr<const detail::ProcessorCore> core_{};
};

}  // namespace idem
