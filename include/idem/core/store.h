/// @file idem/core/store.h
/// @brief The Store interface every backend implements, its requests and the
/// asynchronous contract; open_store().
///
/// Store is the one interface every backend implements. Each method is one
/// atomic operation implementing exactly this state machine (docs/design.md,
/// "The state machine", explains the rules behind it):
///
/// | record before             | operation                          | record after          | answer               |
/// |---------------------------|------------------------------------|-----------------------|----------------------|
/// | absent or expired         | claim                              | PROCESSING, attempt 1 | kAcquired (new)      |
/// | PROCESSING, lease valid   | claim                              | unchanged             | kInProgress          |
/// | PROCESSING, lease expired | claim                              | attempt+1, new token  | kAcquired (takeover) |
/// | FAILED, retryable         | claim                              | attempt+1, new token  | kAcquired (retry)    |
/// | FAILED, terminal          | claim                              | unchanged             | kFailed              |
/// | COMPLETED                 | claim                              | unchanged             | kCompleted           |
/// | any, fingerprint differs  | claim                              | unchanged             | kMismatch            |
/// | PROCESSING, token matches | complete, fail, extend, checkpoint | written               | ok                   |
/// | token stale               | complete, fail, extend, checkpoint | unchanged             | kLeaseLost           |
///
/// Tokens strictly increase per key, across deletion and expiry too. A record
/// never expires while its lease is live.
///
/// Stores are thread-safe: one instance is shared by all threads of a process.
///
/// The asynchronous forms (`*_async`) take a completion callback instead of
/// returning. Their contract, the same for every store:
///
///  * `done` is called exactly once, with the same value the synchronous form
///    would have returned.
///  * Everything a request points to (keys, results, the span of claims) need
///    only stay valid until the `*_async` call returns: the store copies what
///    it keeps.
///  * Where `done` runs: stores without native asynchronous I/O (memory,
///    SQLite: `async_is_native()` is false) run the synchronous operation and
///    call `done` on the calling thread before returning. Native stores (Redis,
///    PostgreSQL) call it later on one of their I/O threads, or on the calling
///    thread before returning when the call fails at once (open circuit
///    breaker, invalid argument). Code that issues a call must therefore cope
///    with `done` running before the call returns.
///  * What `done` may do: return quickly. It may issue more `*_async` calls
///    (that is how an event loop keeps hundreds of events in flight from one
///    thread). It must not block, and in particular must not make a
///    synchronous call on a native store from inside `done`: that call would
///    wait for the very I/O thread it is blocking. Stores detect that case and
///    fail it with kInternal instead of deadlocking. Hand slow work (the
///    handler itself) to an executor of your own.
///  * An exception thrown by `done` is caught and dropped by the store; do not
///    rely on it propagating anywhere.
///  * `done` may release the last reference to the store itself (the guard's
///    state, which holds the checker and so the store, is often freed right
///    after its last callback). A native store must then finish cleanly: its
///    destructor, running on its own I/O thread, must not join that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "idem/core/limits.h"
#include "idem/core/record.h"

namespace idem {

/// The arguments of Store::claim(). The views need only stay valid for the
/// call.
///
/// Requests carry durations, not deadlines: the store adds them to its own
/// clock. Every store refuses, with kInvalidArgument and before writing
/// anything, a lease outside [1 ms, kMaxLease] or a ttl outside
/// [1 ms, kMaxTtl] (limits.h); see validate_claim_request() below.
struct ClaimRequest {
  std::string_view key{};          ///< the full store key (see build_key)
  std::string_view event_id{};     ///< stored as IdempotencyRecord::event_id when a new life of the key starts
  std::string_view event_type{};   ///< stored as IdempotencyRecord::event_type likewise
  std::string_view fingerprint{};  ///< of the payload (Envelope::payload_fingerprint()); empty: not checked
  /// How long the claim is exclusive if it acquires (default 30 s).
  std::chrono::milliseconds lease{30'000};
  /// How long the record is kept; restarted by the verdict (default 24 h).
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

/// The arguments of Store::complete(): the owner's verdict "done, with this
/// result". The views need only stay valid for the call.
struct CompleteRequest {
  std::string_view key{};     ///< the full store key
  Token token = 0;            ///< the caller's fencing token; a stale one is kLeaseLost
  std::string_view result{};  ///< stored and replayed to duplicates; opaque to the store
  /// How long the COMPLETED record is kept, from now (default 24 h).
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

/// The arguments of Store::fail(): the owner's verdict "failed". The views
/// need only stay valid for the call.
struct FailRequest {
  std::string_view key{};    ///< the full store key
  Token token = 0;           ///< the caller's fencing token; a stale one is kLeaseLost
  std::string_view error{};  ///< the failure message, replayed to duplicates of a terminal failure
  bool retryable = true;     ///< true: the next claim runs again; false: terminal
  /// How long the FAILED record is kept, from now (default 24 h).
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

/// validate_claim_request() returns kInvalidArgument, naming the field, when
/// request.lease is outside [1 ms, kMaxLease] or request.ttl outside
/// [1 ms, kMaxTtl]. Every Store implementation calls these checks first in
/// the matching operation (claim_many: on every request, before any is
/// written), so that all stores refuse the same requests the same way.
///
/// @code
/// Result<ClaimOutcome> MyStore::claim(const ClaimRequest& request) {
///   if (Status valid = validate_claim_request(request); !valid) return std::move(valid).error();
///   ...
/// @endcode
Status validate_claim_request(const ClaimRequest& request);
/// validate_complete_request() checks request.ttl as above.
Status validate_complete_request(const CompleteRequest& request);
/// validate_fail_request() checks request.ttl as above.
Status validate_fail_request(const FailRequest& request);
/// validate_lease() checks the lease of Store::extend() as above.
Status validate_lease(std::chrono::milliseconds lease);

/// What Store::scan() returns, and from where. The filters combine (all
/// must match).
struct ScanOptions {
  /// Empty: start; pass ScanPage::next_cursor to continue.
  std::string cursor{};
  /// Only records with this status; unset: any status.
  std::optional<ProcessingStatus> status{};
  /// Only records first seen at least this long ago. 0 means any age.
  std::chrono::milliseconds older_than{0};
  /// Page size hint; a page may hold fewer (even none before the end).
  std::size_t limit = 100;
  /// Only keys starting with this; empty: all.
  std::string prefix{};
};

/// One page of Store::scan().
struct ScanPage {
  std::vector<IdempotencyRecord> records{};  ///< the live records of this page
  std::string next_cursor{};                 ///< empty when the scan is complete
};

/// What Store::stats() counts: the live (unexpired) records of the store.
struct StoreStats {
  std::uint64_t processing = 0;  ///< PROCESSING records, live lease or not
  std::uint64_t completed = 0;   ///< COMPLETED records
  std::uint64_t failed = 0;      ///< FAILED records, retryable or terminal
  /// The PROCESSING record first seen longest ago, if any (it may still be
  /// running: compare its lease with now before calling it stuck).
  std::optional<IdempotencyRecord> oldest_processing{};
  std::optional<std::uint64_t> bytes;  ///< store size or memory, when known
};

/// CircuitState is a store's circuit breaker position. Stores without a
/// breaker are always kClosed.
enum class CircuitState : std::uint8_t {
  kClosed = 0,    ///< calls go to the server
  kHalfOpen = 1,  ///< one probe call is let through; success closes, failure reopens
  kOpen = 2,      ///< calls fail fast with kUnavailable until the open period passes
};
/// "closed", "half_open" or "open".
std::string_view to_string(CircuitState state) noexcept;

/// What Store::sweep() did.
struct SweepReport {
  std::uint64_t expired_removed = 0;  ///< expired records deleted by this sweep
};

/// Completion callback of an asynchronous store call that returns a value
/// (see the file comment for the threading contract).
template <typename T>
using ResultCallback = std::function<void(Result<T>)>;
/// Completion callback of an asynchronous store call without a value.
using StatusCallback = std::function<void(Status)>;

/// The storage of idempotency records: one atomic operation per method,
/// following the state machine and the asynchronous contract of the file
/// comment. Implemented by the memory, SQLite, Redis and PostgreSQL stores;
/// obtained from open_store() or a store's own factory.
class Store {
 public:
  virtual ~Store() = default;

  /// kind() is the URL scheme family: "memory", "sqlite", "redis", ...
  virtual std::string_view kind() const noexcept = 0;

  /// claim() decides who runs the handler for request.key. Returns the prior
  /// record when it does not acquire. One atomic operation.
  virtual Result<ClaimOutcome> claim(const ClaimRequest& request) = 0;

  /// claim_many() claims several keys in one round trip (one transaction, one
  /// pipeline). Outcomes are in request order. Each claim is atomic on its own;
  /// the batch as a whole is not all-or-nothing. The default loops over claim().
  virtual Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests);

  /// complete() stores the result and makes the record COMPLETED, resetting its
  /// TTL. kLeaseLost when the token is stale.
  virtual Status complete(const CompleteRequest& request) = 0;

  /// fail() makes the record FAILED with `error`. A retryable failure lets the
  /// next claim run again; a terminal one is replayed to duplicates.
  virtual Status fail(const FailRequest& request) = 0;

  /// extend() pushes the lease to now + lease (a heartbeat).
  virtual Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) = 0;

  /// checkpoint() records a recovery point under the owner's token.
  virtual Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) = 0;

  /// get() returns the record, or nullopt when absent or expired.
  virtual Result<std::optional<IdempotencyRecord>> get(std::string_view key) = 0;

  /// remove() deletes the record whatever its state; true when one existed.
  /// A later claim of the key still gets a higher token than any before.
  virtual Result<bool> remove(std::string_view key) = 0;

  /// scan() pages through live records; cursor-based so it never blocks the
  /// store for long.
  virtual Result<ScanPage> scan(const ScanOptions& options) = 0;

  /// stats() counts the live records by status and finds the oldest
  /// PROCESSING one. On network stores it may walk the whole keyspace: call it
  /// from monitoring (StoreSnapshotPoller), not per event.
  virtual Result<StoreStats> stats() = 0;

  /// sweep() removes expired records, for stores that do not expire by
  /// themselves (a no-op returning zeros elsewhere).
  virtual Result<SweepReport> sweep() = 0;

  /// ping() checks that the store answers.
  virtual Status ping() = 0;

  /// approximate_record_bytes() estimates what the record at `key` costs the
  /// store: its bytes plus the index entries and per-entry overhead it
  /// brings. nullopt when the key is absent or the store cannot tell (the
  /// default). It looks at that one record only, never at the rest of the
  /// store: `idem bench` samples its own keys with it on shared stores.
  virtual Result<std::optional<std::uint64_t>> approximate_record_bytes(std::string_view /*key*/) {
    return std::optional<std::uint64_t>();
  }

  // --- Asynchronous forms (see the file comment for the threading contract).
  // The defaults run the synchronous operation inline; native stores
  // override them and return true from async_is_native().

  /// True when the `*_async` forms do real asynchronous I/O and call `done`
  /// on a store thread (Redis, PostgreSQL); false when they run the
  /// synchronous operation and call `done` before returning (the default).
  virtual bool async_is_native() const noexcept { return false; }
  /// claim() answered through `done`.
  virtual void claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done);
  /// claim_many() answered through `done`; the span need only live until
  /// this call returns.
  virtual void claim_many_async(std::span<const ClaimRequest> requests, ResultCallback<std::vector<ClaimOutcome>> done);
  /// complete() answered through `done`.
  virtual void complete_async(const CompleteRequest& request, StatusCallback done);
  /// fail() answered through `done`.
  virtual void fail_async(const FailRequest& request, StatusCallback done);
  /// extend() answered through `done`.
  virtual void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done);
  /// checkpoint() answered through `done`.
  virtual void checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done);
  /// get() answered through `done`.
  virtual void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done);
  /// remove() answered through `done`.
  virtual void remove_async(std::string_view key, ResultCallback<bool> done);

  /// wait_settled() blocks until the record at `key` is no longer PROCESSING
  /// under a live lease (completed, failed, removed, expired, or its lease ran
  /// out), or until `timeout` passes, and returns the record as last seen.
  /// A negative timeout counts as 0 and a huge one saturates. The default
  /// polls get() with a short backoff (up to 200 ms between reads); stores
  /// that can be told of a change override it to wake the waiter as soon as
  /// the original finishes: memory (a condition per shard) and SQLite (a
  /// process-wide notifier per database file, polling for other processes).
  virtual Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key,
                                                                std::chrono::milliseconds timeout);

  /// circuit_state() is the position of the store's circuit breaker, for
  /// health checks and the circuit_breaker_state metric.
  virtual CircuitState circuit_state() const noexcept { return CircuitState::kClosed; }
};

/// OpenOptions are the choices about opening a store that do not belong in
/// its URL because they depend on who opens it, not on where the store is.
struct OpenOptions {
  /// false: never create a store that does not exist yet. A SQLite file (or
  /// its directory) that is missing, or a file that is not an Idem database,
  /// fails with kNotFound and nothing is written; `memory://name` fails with
  /// kNotFound unless this process has that store open. A plain `memory://`
  /// is always a new private store, and network stores have nothing to
  /// create. Inspection tools (idem get/list/stats) open with false, so a
  /// mistyped path is reported instead of showing an empty store.
  bool create_if_missing = true;
};

/// open_store() makes a store from a URL: "memory://", "memory://name",
/// "sqlite:///path/idem.db", and the network stores compiled in (see
/// idem/stores/*.h). A URL without a known scheme, or with bad parameters, is
/// kInvalidConfiguration. Declared here, defined by the idem::idem target,
/// which links every enabled backend.
///
/// @code
/// auto store = idem::open_store("sqlite:///var/lib/app/idem.db", {.create_if_missing = false});
/// if (!store && store.error().code() == idem::ErrorCode::kNotFound) { /* nothing at that path */ }
/// @endcode
Result<std::shared_ptr<Store>> open_store(std::string_view url);
/// open_store() with explicit OpenOptions (the one-argument form uses the
/// defaults: create_if_missing = true).
Result<std::shared_ptr<Store>> open_store(std::string_view url, const OpenOptions& options);

/// The default store URL when IDEM_STORE_URL is unset:
/// sqlite://$XDG_STATE_HOME/idem/idem.db, falling back to
/// ~/.local/state/idem/idem.db, then /tmp/idem-$UID/idem.db. Directories are
/// created on demand when the store opens.
std::string default_store_url();

}  // namespace idem
