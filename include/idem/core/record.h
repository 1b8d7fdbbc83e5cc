/// @file idem/core/record.h
/// @brief What a store keeps per key (IdempotencyRecord) and what a claim
/// answers (ClaimOutcome).
///
/// IdempotencyRecord is what a store keeps per key, and ClaimOutcome is what a
/// claim answers. Both are plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace idem {

/// Wall-clock instant with millisecond precision: records are shared between
/// processes (and, for network stores, hosts), so a steady clock cannot be used.
using Timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// format_rfc3339() writes `time` as UTC with milliseconds,
/// like "2026-11-28T07:49:58.123Z".
std::string format_rfc3339(Timestamp time);

/// Fencing token: strictly increasing per key across every life of the key.
using Token = std::uint64_t;

/// The state of a record. docs/design.md has the full state machine.
enum class ProcessingStatus : std::uint8_t {
  kProcessing,  ///< claimed; its owner runs the handler under a lease
  kCompleted,   ///< the handler's result is stored and replayed to duplicates
  kFailed,      ///< the handler failed; IdempotencyRecord::retryable says if it may run again
};

/// "PROCESSING", "COMPLETED", "FAILED": the names of the original design.
std::string_view to_string(ProcessingStatus status) noexcept;
/// Parses the names above (case-sensitive); nullopt for anything else.
std::optional<ProcessingStatus> parse_status(std::string_view text) noexcept;

/// A recovery point recorded by the owner of a key while its handler runs.
/// A worker that takes the key over (or retries it) receives the last one in
/// ClaimOutcome::checkpoint and can resume from there instead of redoing
/// side effects that already happened.
struct Checkpoint {
  std::string name{};  ///< the step reached, such as "charged"
  std::string data{};  ///< what resuming needs (the charge id, say); opaque to Idem
  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

/// The record a store keeps for one key: who owns it, how it ended, and
/// until when it is kept. Plain value, as returned by Store::get() and scan().
struct IdempotencyRecord {
  std::string idempotency_key{};  ///< the full store key
  std::string event_id{};         ///< Envelope::event_id of the claim that created this life of the key
  std::string event_type{};       ///< Envelope::event_type of that claim
  ProcessingStatus status = ProcessingStatus::kProcessing;  ///< where the record is in its state machine
  std::optional<std::string> result{};                      ///< the handler's result (usually JSON)
  std::optional<std::string> error{};                       ///< the failure message, when FAILED
  bool retryable = true;                                    ///< for FAILED: may the next delivery run again?
  Timestamp first_seen_at{};                                ///< when this life of the key was first claimed
  /// When the verdict (COMPLETED or FAILED) was written; unset while PROCESSING.
  std::optional<Timestamp> completed_at{};
  /// How many times this life of the key was acquired: 1, then +1 per
  /// takeover or retry.
  std::uint32_t attempt = 0;
  Token token = 0;               ///< the current owner's fencing token
  Timestamp lease_expires_at{};  ///< the owner's lease end; meaningful while PROCESSING
  std::string fingerprint{};     ///< of the payload; empty when not checked
  /// When the store may drop the record: the verdict time plus the TTL, and
  /// never before lease_expires_at.
  Timestamp expires_at{};
  std::optional<Checkpoint> checkpoint{};  ///< last recovery point, if any

  /// True while the lease runs past `now` (a PROCESSING record is then owned).
  bool lease_valid(Timestamp now) const noexcept { return lease_expires_at > now; }
  friend bool operator==(const IdempotencyRecord&, const IdempotencyRecord&) = default;
};

/// ClaimStatus is the answer to "may I run the handler for this key?".
enum class ClaimStatus : std::uint8_t {
  kAcquired,    ///< yes: you own the key until the lease expires
  kInProgress,  ///< no: another worker holds a live lease
  kCompleted,   ///< no: done before; `record->result` is the cached result
  kFailed,      ///< no: failed terminally; `record->error` is replayed
  kMismatch,    ///< no: the key was used with a different payload
};
/// "acquired", "in_progress", "completed", "failed" or "mismatch".
std::string_view to_string(ClaimStatus status) noexcept;

/// How an acquired claim came about.
enum class AcquireKind : std::uint8_t {
  kNew,       ///< the key was absent (or expired)
  kTakeover,  ///< a PROCESSING record whose lease had expired
  kRetry,     ///< a FAILED record marked retryable
};
/// "new", "takeover" or "retry".
std::string_view to_string(AcquireKind kind) noexcept;

/// The answer of Store::claim(): whether the caller owns the key now and, if
/// not, the record that decided it.
struct ClaimOutcome {
  ClaimStatus status = ClaimStatus::kAcquired;   ///< may the caller run the handler?
  AcquireKind acquire_kind = AcquireKind::kNew;  ///< meaningful when acquired
  Token token = 0;                               ///< when acquired: the new owner's fencing token
  std::uint32_t attempt = 0;                     ///< when acquired: 1 for a new key, then +1 per takeover or retry
  Timestamp lease_expires_at{};                  ///< when acquired: the end of the new owner's lease
  /// When acquired by takeover or retry: the previous owner's last
  /// checkpoint, so the new owner can resume instead of redoing.
  std::optional<Checkpoint> checkpoint{};
  /// When not acquired: the record as it stands (the cached result, the
  /// stored error, or the live owner's lease).
  std::optional<IdempotencyRecord> record{};

  /// True when the caller owns the key (status is kAcquired).
  bool acquired() const noexcept { return status == ClaimStatus::kAcquired; }
};

}  // namespace idem
