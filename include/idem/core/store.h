// File: idem/core/store.h
//
// Store is the one interface every backend implements. Each method is one
// atomic operation implementing exactly the state machine of SPEC §2:
//
//   from                        operation        result
//   absent / expired            claim            PROCESSING, attempt 1 -> kAcquired
//   PROCESSING, lease valid     claim            unchanged             -> kInProgress
//   PROCESSING, lease expired   claim            attempt+1, new token  -> kAcquired (takeover)
//   FAILED, retryable           claim            attempt+1, new token  -> kAcquired (retry)
//   FAILED, terminal            claim            unchanged             -> kFailed
//   COMPLETED                   claim            unchanged             -> kCompleted
//   any, fingerprint differs    claim            unchanged             -> kMismatch
//   PROCESSING, token matches   complete/fail/extend/checkpoint
//   token stale                 complete/fail/extend/checkpoint -> kLeaseLost, nothing written
//
// Tokens strictly increase per key, across deletion and expiry too. A record
// never expires while its lease is live.
//
// Stores are thread-safe: one instance is shared by all threads of a process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "idem/core/record.h"

namespace idem {

struct ClaimRequest {
  std::string_view key{};  // the full store key (see build_key)
  std::string_view event_id{};
  std::string_view event_type{};
  std::string_view fingerprint{};  // empty: payload not checked
  std::chrono::milliseconds lease{30'000};
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

struct CompleteRequest {
  std::string_view key{};
  Token token = 0;
  std::string_view result{};
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

struct FailRequest {
  std::string_view key{};
  Token token = 0;
  std::string_view error{};
  bool retryable = true;
  std::chrono::milliseconds ttl{24 * 3600 * 1000};
};

struct ScanOptions {
  std::string cursor{};                      // empty: start; pass ScanPage::next_cursor to continue
  std::optional<ProcessingStatus> status{};  // only records with this status
  // Only records first seen at least this long ago. 0 means any age.
  std::chrono::milliseconds older_than{0};
  std::size_t limit = 100;  // page size hint; a page may hold fewer
  std::string prefix{};     // only keys starting with this; empty: all
};

struct ScanPage {
  std::vector<IdempotencyRecord> records{};
  std::string next_cursor{};  // empty when the scan is complete
};

struct StoreStats {
  std::uint64_t processing = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::optional<IdempotencyRecord> oldest_processing{};
  std::optional<std::uint64_t> bytes;  // store size or memory, when known
};

// CircuitState is a store's circuit breaker position. Stores without a
// breaker are always kClosed.
enum class CircuitState : std::uint8_t {
  kClosed = 0,    // calls go to the server
  kHalfOpen = 1,  // one probe call is let through; success closes, failure reopens
  kOpen = 2,      // calls fail fast with kUnavailable until the open period passes
};
std::string_view to_string(CircuitState state) noexcept;

struct SweepReport {
  std::uint64_t expired_removed = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // kind() is the URL scheme family: "memory", "sqlite", "redis", ...
  virtual std::string_view kind() const noexcept = 0;

  // claim() decides who runs the handler for request.key. Returns the prior
  // record when it does not acquire. One atomic operation.
  virtual Result<ClaimOutcome> claim(const ClaimRequest& request) = 0;

  // claim_many() claims several keys in one round trip (one transaction, one
  // pipeline). Outcomes are in request order. Each claim is atomic on its own;
  // the batch as a whole is not all-or-nothing. The default loops over claim().
  virtual Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests);

  // complete() stores the result and makes the record COMPLETED, resetting its
  // TTL. kLeaseLost when the token is stale.
  virtual Status complete(const CompleteRequest& request) = 0;

  // fail() makes the record FAILED with `error`. A retryable failure lets the
  // next claim run again; a terminal one is replayed to duplicates.
  virtual Status fail(const FailRequest& request) = 0;

  // extend() pushes the lease to now + lease (a heartbeat).
  virtual Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) = 0;

  // checkpoint() records a recovery point under the owner's token.
  virtual Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) = 0;

  // get() returns the record, or nullopt when absent or expired.
  virtual Result<std::optional<IdempotencyRecord>> get(std::string_view key) = 0;

  // remove() deletes the record whatever its state; true when one existed.
  // A later claim of the key still gets a higher token than any before.
  virtual Result<bool> remove(std::string_view key) = 0;

  // scan() pages through live records; cursor-based so it never blocks the
  // store for long.
  virtual Result<ScanPage> scan(const ScanOptions& options) = 0;

  virtual Result<StoreStats> stats() = 0;

  // sweep() removes expired records, for stores that do not expire by
  // themselves (a no-op returning zeros elsewhere).
  virtual Result<SweepReport> sweep() = 0;

  // ping() checks that the store answers.
  virtual Status ping() = 0;

  // circuit_state() is the position of the store's circuit breaker, for
  // health checks and the circuit_breaker_state metric.
  virtual CircuitState circuit_state() const noexcept { return CircuitState::kClosed; }
};

// open_store() makes a store from a URL: "memory://", "sqlite:///path/idem.db",
// and the network stores compiled in (see idem/stores/*.h). Declared here,
// defined by the idem::idem target, which links every enabled backend.
Result<std::shared_ptr<Store>> open_store(std::string_view url);

// The default store URL when IDEM_STORE_URL is unset:
// sqlite://$XDG_STATE_HOME/idem/idem.db, falling back to
// ~/.local/state/idem/idem.db, then /tmp/idem-$UID/idem.db. Directories are
// created on demand when the store opens.
std::string default_store_url();

}  // namespace idem
