// File: idem/core/checker.h
//
// IdempotencyChecker is the manual pattern: you claim, run, and complete or
// fail yourself. The guard (processor.h) and the wrapper (handler.h) are built
// on it. The method names are those of the original design.
//
//   auto checker = idem::get_idempotency_checker();   // IDEM_STORE_URL or SQLite
//   auto claim = checker->mark_processing(envelope);
//   if (claim && claim->outcome.acquired()) {
//     std::string result = charge(envelope);
//     checker->mark_completed(claim->key, claim->outcome.token, result).value();
//   }
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

// What to do when the store cannot be reached.
enum class OutagePolicy : std::uint8_t {
  // Do not run the handler; report StoreUnavailableError so the message is
  // redelivered later. The safe default.
  kFailClosed,
  // Run the handler without protection, count it (Observer::on_fail_open)
  // and log it. Only for handlers whose duplicates are harmless.
  kFailOpen,
};

struct CheckerOptions {
  // How long a finished record is kept (and replayed) after completion.
  // Between 1 ms and kMaxTtl (10 years, limits.h).
  std::chrono::milliseconds ttl = std::chrono::hours(24);
  // How long a claim is exclusive. A worker that dies is taken over after
  // this; a live one renews it (heartbeat) before it runs out. Between 1 ms
  // and kMaxLease (7 days, limits.h).
  std::chrono::milliseconds lease = std::chrono::seconds(30);
  KeyOptions key{};
  // Compare payload fingerprints: a key reused with another payload is a
  // kMismatch instead of a silent replay of the wrong result.
  bool validate_payload = true;
  // Largest result stored, in bytes. complete() (and so every pattern)
  // refuses a larger result with kResultTooLarge / ResultTooLargeError and
  // marks the record FAILED (retryable), so the next delivery runs again.
  std::size_t max_result_bytes = 1 << 20;
  OutagePolicy outage_policy = OutagePolicy::kFailClosed;
  // Metrics, tracing and logs; may be null.
  std::shared_ptr<Observer> observer{};

  // validate() returns kInvalidConfiguration, naming the option, when one is
  // out of range (the bounds above). The checker's constructor throws it as
  // ConfigurationError; from_url() returns it.
  Status validate() const;
};

// Claim is a ClaimOutcome together with the store key it is about.
struct Claim {
  std::string key{};
  ClaimOutcome outcome{};
};

class IdempotencyChecker {
 public:
  explicit IdempotencyChecker(std::shared_ptr<Store> store, CheckerOptions options = {});

  // Opens the store at `url` (see open_store) and validates options: bad
  // options or a bad URL are kInvalidConfiguration. Like open_store(), it is
  // defined by the idem::idem target.
  static Result<std::shared_ptr<IdempotencyChecker>> from_url(std::string_view url, CheckerOptions options = {});

  const CheckerOptions& options() const noexcept { return options_; }
  Store& store() const noexcept { return *store_; }
  const std::shared_ptr<Store>& store_ptr() const noexcept { return store_; }

  // --- Keys ----------------------------------------------------------------
  // The full store key of an envelope, or of a raw idempotency key, under
  // options().key (or `key_options` when given).
  Result<std::string> key_for(const Envelope& envelope) const;
  Result<std::string> key_for(const Envelope& envelope, const KeyOptions& key_options) const;
  Result<std::string> key_for(std::string_view idempotency_key) const;

  // --- Claims ----------------------------------------------------------------
  Result<Claim> claim(const Envelope& envelope) const;
  Result<Claim> claim(const Envelope& envelope, const KeyOptions& key_options) const;
  // One round trip for all envelopes; results in input order. A malformed
  // envelope fails the whole batch before anything is sent.
  Result<std::vector<Claim>> claim_many(std::span<const Envelope> envelopes) const;

  // These take the full store key (Claim::key).
  //
  // complete() stores `result` and makes the record COMPLETED. A result
  // above options().max_result_bytes is not stored: the record is marked
  // FAILED (retryable) instead, so that redeliveries run again rather than
  // find it in progress, and kResultTooLarge is returned.
  Status complete(std::string_view key, Token token, std::string_view result) const;
  Status fail(std::string_view key, Token token, std::string_view error, bool retryable) const;
  Status extend(std::string_view key, Token token) const;  // by options().lease
  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) const;
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) const;

  // Waits up to `timeout` for a PROCESSING record to settle: COMPLETED,
  // FAILED, gone, or its lease run out (see Store::wait_settled). Returns the
  // record as last seen (still PROCESSING on timeout; nullopt if it
  // disappeared).
  Result<std::optional<IdempotencyRecord>> wait_for_completion(std::string_view key,
                                                               std::chrono::milliseconds timeout) const;

  // --- Asynchronous forms -----------------------------------------------------
  // The same operations as above, answered through `done` as the store's
  // *_async contract says (store.h): on the calling thread for memory and
  // SQLite, on a store I/O thread for Redis and PostgreSQL. The key is built
  // and checked on the calling thread, so bad input is reported (through
  // `done`) before anything is sent. Observers are called on the thread that
  // runs `done`, before it.
  void claim_async(const Envelope& envelope, ResultCallback<Claim> done) const;
  void claim_async(const Envelope& envelope, const KeyOptions& key_options, ResultCallback<Claim> done) const;
  void claim_many_async(std::span<const Envelope> envelopes, ResultCallback<std::vector<Claim>> done) const;
  void complete_async(std::string_view key, Token token, std::string_view result, StatusCallback done) const;
  void fail_async(std::string_view key, Token token, std::string_view error, bool retryable, StatusCallback done) const;
  void extend_async(std::string_view key, Token token, StatusCallback done) const;
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done) const;
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) const;

  // --- The original design's names (raw idempotency keys) -------------------
  Result<std::optional<IdempotencyRecord>> get_processing_record(std::string_view idempotency_key) const;
  Result<Claim> mark_processing(const Envelope& envelope) const { return claim(envelope); }
  Status mark_completed(std::string_view key, Token token, std::string_view result) const {
    return complete(key, token, result);
  }
  Status mark_failed(std::string_view key, Token token, std::string_view error, bool retryable = true) const {
    return fail(key, token, error, retryable);
  }
  // True when a record exists that a new delivery must not run over
  // (COMPLETED, terminal FAILED, or PROCESSING with a live lease).
  Result<bool> is_duplicate(std::string_view idempotency_key) const;
  Result<bool> delete_record(std::string_view idempotency_key) const;

  // health() pings the store and reports its round-trip time.
  struct Health {
    bool reachable = false;
    std::chrono::microseconds round_trip{0};
    std::string store_kind{};
    std::string detail{};  // the error when unreachable
    CircuitState circuit = CircuitState::kClosed;
  };
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

// get_idempotency_checker() returns the process-wide default checker, opened
// once from IDEM_STORE_URL (or default_store_url() when unset) with default
// options. Throws ConfigurationError for a bad URL, StoreUnavailableError
// when the store cannot be opened.
std::shared_ptr<IdempotencyChecker> get_idempotency_checker();

// Replaces the process-wide default (for tests and for services that build
// their checker from their own configuration).
void set_idempotency_checker(std::shared_ptr<IdempotencyChecker> checker);

}  // namespace idem
