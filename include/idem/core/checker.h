/// @file idem/core/checker.h
/// @brief IdempotencyChecker, the manual pattern: claim, run, then complete or
/// fail yourself.
///
/// IdempotencyChecker is the manual pattern: you claim, run, and complete or
/// fail yourself. The guard (processor.h) and the wrapper (handler.h) are built
/// on it. The method names are those of the original design.
///
/// @code
/// auto checker = idem::get_idempotency_checker();  // IDEM_STORE_URL or SQLite
/// auto claim = checker->mark_processing(envelope);
/// if (claim && claim->outcome.acquired()) {
///   std::string result = charge(envelope);
///   checker->mark_completed(claim->key, claim->outcome.token, result).value();
/// }
/// @endcode
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/envelope.h"
#include "idem/core/error.h"
#include "idem/core/key.h"
#include "idem/core/observer.h"
#include "idem/core/record.h"
#include "idem/core/store.h"

namespace idem {

namespace detail {
struct CheckerAccess;
}  // namespace detail

/// What the guard and the wrapper do when the store cannot be reached
/// (kUnavailable or kTimeout). The checker's own calls always return the
/// error.
enum class OutagePolicy : std::uint8_t {
  /// Do not run the handler; report StoreUnavailableError so the message is
  /// redelivered later. The safe default.
  kFailClosed,
  /// Run the handler without protection, count it (Observer::on_fail_open)
  /// and log it. Only for handlers whose duplicates are harmless.
  kFailOpen,
};

/// Options of IdempotencyChecker: the lifetimes of records and claims, how
/// keys are built, and what is checked. The defaults suit most handlers.
struct CheckerOptions {
  /// How long a finished record is kept (and replayed) after completion.
  /// Between 1 ms and kMaxTtl (10 years, limits.h).
  std::chrono::milliseconds ttl = std::chrono::hours(24);
  /// How long a claim is exclusive. A worker that dies is taken over after
  /// this; a live one renews it (heartbeat) before it runs out. Between 1 ms
  /// and kMaxLease (7 days, limits.h).
  std::chrono::milliseconds lease = std::chrono::seconds(30);
  /// How store keys are built (prefix, scope, length limit, hashing).
  KeyOptions key{};
  /// Compare payload fingerprints: a key reused with another payload is a
  /// kMismatch instead of a silent replay of the wrong result.
  bool validate_payload = true;
  /// Largest result stored, in bytes. complete() (and so every pattern)
  /// refuses a larger result with kResultTooLarge / ResultTooLargeError and
  /// marks the record FAILED (retryable), so the next delivery runs again.
  /// The same bound applies to Checkpoint::data. Default 1 MiB; must be
  /// positive.
  std::size_t max_result_bytes = 1 << 20;
  /// What the guard and the wrapper do when the store is unreachable.
  OutagePolicy outage_policy = OutagePolicy::kFailClosed;
  /// Metrics, tracing and logs; may be null.
  std::shared_ptr<Observer> observer{};

  /// validate() returns kInvalidConfiguration, naming the option, when one is
  /// out of range (the bounds above). The checker's constructor throws it as
  /// ConfigurationError; from_url() returns it.
  Status validate() const;
};

/// Claim is a ClaimOutcome together with the store key it is about.
struct Claim {
  std::string key{};       ///< the full store key: pass it to complete(), fail(), extend(), checkpoint()
  ClaimOutcome outcome{};  ///< the store's answer; outcome.token when acquired
};

/// The manual API over one store: builds keys, claims them, and writes the
/// verdicts, reporting every call to CheckerOptions::observer. Thread-safe:
/// share one instance (usually through a std::shared_ptr) between all
/// threads.
class IdempotencyChecker {
 public:
  /// Uses `store` with `options`. Throws ConfigurationError for a null store
  /// or options that fail CheckerOptions::validate().
  explicit IdempotencyChecker(std::shared_ptr<Store> store, CheckerOptions options = {});

  /// Opens the store at `url` (see open_store) and validates options: bad
  /// options or a bad URL are kInvalidConfiguration. Like open_store(), it is
  /// defined by the idem::idem target.
  static Result<std::shared_ptr<IdempotencyChecker>> from_url(std::string_view url, CheckerOptions options = {});

  /// The options given at construction.
  const CheckerOptions& options() const noexcept { return options_; }
  /// The store every call goes to.
  Store& store() const noexcept { return *store_; }
  /// The store, shared (to keep it alive beyond the checker).
  const std::shared_ptr<Store>& store_ptr() const noexcept { return store_; }

  // --- Keys ------------------------------------------------------------------

  /// The full store key of an envelope under options().key (see build_key());
  /// kInvalidArgument for an empty, too long or NUL-holding key.
  Result<std::string> key_for(const Envelope& envelope) const;
  /// The full store key of an envelope under `key_options` instead of
  /// options().key.
  Result<std::string> key_for(const Envelope& envelope, const KeyOptions& key_options) const;
  /// The full store key of a raw idempotency key under options().key.
  Result<std::string> key_for(std::string_view idempotency_key) const;

  // --- Claims ----------------------------------------------------------------

  /// Claims the envelope's key (built under options().key) with
  /// options().lease and ttl, and the payload fingerprint when
  /// validate_payload is set. The Claim says whether this caller now owns the
  /// key; a duplicate is a value (outcome.status), not an error. Errors: a
  /// bad key (kInvalidArgument) or the store's.
  Result<Claim> claim(const Envelope& envelope) const;
  /// claim() with `key_options` instead of options().key (a handler's own
  /// scope or extractor).
  Result<Claim> claim(const Envelope& envelope, const KeyOptions& key_options) const;
  /// One round trip for all envelopes; results in input order. A malformed
  /// envelope fails the whole batch before anything is sent.
  Result<std::vector<Claim>> claim_many(std::span<const Envelope> envelopes) const;

  // These take the full store key (Claim::key) and the token of the claim.

  /// complete() stores `result` and makes the record COMPLETED. A result
  /// above options().max_result_bytes is not stored: the record is marked
  /// FAILED (retryable) instead, so that redeliveries run again rather than
  /// find it in progress, and kResultTooLarge is returned.
  Status complete(std::string_view key, Token token, std::string_view result) const;
  /// fail() makes the record FAILED with `error` (cut to 4 KiB): retryable
  /// lets the next delivery run again, terminal replays `error` to every
  /// duplicate. kLeaseLost when the token is stale.
  Status fail(std::string_view key, Token token, std::string_view error, bool retryable) const;
  /// Renews the lease to now + options().lease (a heartbeat). kLeaseLost
  /// when the token is stale.
  Status extend(std::string_view key, Token token) const;
  /// Records a recovery point under the owner's token; kResultTooLarge when
  /// checkpoint.data is above options().max_result_bytes, kLeaseLost when
  /// the token is stale.
  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) const;
  /// The record at the full store key, or nullopt when absent or expired.
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) const;

  /// Waits up to `timeout` for a PROCESSING record to settle: COMPLETED,
  /// FAILED, gone, or its lease run out (see Store::wait_settled). Returns the
  /// record as last seen (still PROCESSING on timeout; nullopt if it
  /// disappeared).
  Result<std::optional<IdempotencyRecord>> wait_for_completion(std::string_view key,
                                                               std::chrono::milliseconds timeout) const;

  // --- Asynchronous forms --------------------------------------------------
  // The same operations as above, answered through `done` as the store's
  // *_async contract says (store.h): on the calling thread for memory and
  // SQLite, on a store I/O thread for Redis and PostgreSQL. The key is built
  // and checked on the calling thread, so bad input is reported (through
  // `done`) before anything is sent. Observers are called on the thread that
  // runs `done`, before it.

  /// claim() answered through `done`; see the asynchronous contract in store.h.
  void claim_async(const Envelope& envelope, ResultCallback<Claim> done) const;
  /// claim(envelope, key_options) answered through `done`.
  void claim_async(const Envelope& envelope, const KeyOptions& key_options, ResultCallback<Claim> done) const;
  /// claim_many() answered through `done`; the span need only live until
  /// this call returns.
  void claim_many_async(std::span<const Envelope> envelopes, ResultCallback<std::vector<Claim>> done) const;
  /// complete() answered through `done` (a result that is too large is
  /// marked FAILED first, as complete() does).
  void complete_async(std::string_view key, Token token, std::string_view result, StatusCallback done) const;
  /// fail() answered through `done`.
  void fail_async(std::string_view key, Token token, std::string_view error, bool retryable, StatusCallback done) const;
  /// extend() answered through `done`.
  void extend_async(std::string_view key, Token token, StatusCallback done) const;
  /// checkpoint() answered through `done`.
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done) const;
  /// get() answered through `done`.
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) const;

  // --- The original design's names ----------------------------------------

  /// get() by raw idempotency key (the key is built under options().key).
  Result<std::optional<IdempotencyRecord>> get_processing_record(std::string_view idempotency_key) const;
  /// claim(envelope), under the original design's name.
  Result<Claim> mark_processing(const Envelope& envelope) const { return claim(envelope); }
  /// complete(), under the original design's name; `key` is Claim::key.
  Status mark_completed(std::string_view key, Token token, std::string_view result) const {
    return complete(key, token, result);
  }
  /// fail(), under the original design's name (retryable unless told
  /// otherwise); `key` is Claim::key.
  Status mark_failed(std::string_view key, Token token, std::string_view error, bool retryable = true) const {
    return fail(key, token, error, retryable);
  }
  /// True when a record exists that a new delivery must not run over
  /// (COMPLETED, terminal FAILED, or PROCESSING with a live lease). Takes a
  /// raw idempotency key. A read only: a claim is still needed to run.
  Result<bool> is_duplicate(std::string_view idempotency_key) const;
  /// Deletes the record of a raw idempotency key whatever its state, so that
  /// the next delivery runs again; true when one existed (Store::remove()).
  Result<bool> delete_record(std::string_view idempotency_key) const;

  /// What health() found.
  struct Health {
    bool reachable = false;                        ///< the store answered ping()
    std::chrono::microseconds round_trip{0};       ///< how long ping() took, answered or not
    std::string store_kind{};                      ///< Store::kind(), such as "redis"
    std::string detail{};                          ///< the error when unreachable
    CircuitState circuit = CircuitState::kClosed;  ///< the store's circuit breaker position
  };
  /// health() pings the store and reports its round-trip time and circuit
  /// breaker; for readiness probes. Never throws for an unreachable store.
  Health health() const;

 private:
  ClaimRequest make_request(const Envelope& envelope, std::string_view key) const;
  Status check_result_size(std::string_view result) const;
  std::string_view capped_error(std::string_view error) const noexcept;
  void observe_claim(std::string_view scope, std::string_view key, std::string_view event_id,
                     std::string_view event_type, const Result<ClaimOutcome>& outcome, SpanScope* span) const;
  struct EventIdentity {
    std::string event_id;
    std::string event_type;
  };
  Result<std::vector<Claim>> finish_claim_many(std::vector<std::string> keys, const std::vector<EventIdentity>& events,
                                               Result<std::vector<ClaimOutcome>> outcomes) const;
  // The start of a store call, read from the clock only when someone
  // observes its latency.
  std::chrono::steady_clock::time_point call_start() const {
    return options_.observer ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  }
  // Reports the call; returns the clock reading taken after it (or `start`
  // when nothing observes), which the guard reuses.
  std::chrono::steady_clock::time_point observe_call(StoreOp op, std::chrono::steady_clock::time_point start,
                                                     const Error* error) const;
  // claim() and complete() that hand the guard the clock reading taken when
  // the store answered, so that it times the handler without reading it again.
  friend struct detail::CheckerAccess;
  Result<Claim> claim_impl(const Envelope& envelope, const KeyOptions& key_options,
                           std::chrono::steady_clock::time_point* answered) const;
  Status complete_impl(std::string_view key, Token token, std::string_view result,
                       std::chrono::steady_clock::time_point* answered) const;

  std::shared_ptr<Store> store_{};
  CheckerOptions options_{};
  // The breaker position last reported to the observer, so that it hears of
  // each transition once instead of on every call.
  mutable std::atomic<CircuitState> reported_circuit_{CircuitState::kClosed};
};

/// get_idempotency_checker() returns the process-wide default checker, opened
/// once from IDEM_STORE_URL (or default_store_url() when unset) with default
/// options. Throws ConfigurationError for a bad URL, StoreUnavailableError
/// when the store cannot be opened.
std::shared_ptr<IdempotencyChecker> get_idempotency_checker();

/// Replaces the process-wide default (for tests and for services that build
/// their checker from their own configuration).
void set_idempotency_checker(std::shared_ptr<IdempotencyChecker> checker);

}  // namespace idem
