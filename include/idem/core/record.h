/// @file idem/core/record.h
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
/// e.g. "2026-11-28T07:49:58.123Z".
std::string format_rfc3339(Timestamp time);

/// Fencing token: strictly increasing per key across every life of the key.
using Token = std::uint64_t;

enum class ProcessingStatus : std::uint8_t { kProcessing, kCompleted, kFailed };

/// "PROCESSING", "COMPLETED", "FAILED": the names of the original design.
std::string_view to_string(ProcessingStatus status) noexcept;
/// Parses the names above (case-sensitive); nullopt for anything else.
std::optional<ProcessingStatus> parse_status(std::string_view text) noexcept;

struct Checkpoint {
  std::string name{};
  std::string data{};
  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

struct IdempotencyRecord {
  std::string idempotency_key{};  ///< the full store key
  std::string event_id{};
  std::string event_type{};
  ProcessingStatus status = ProcessingStatus::kProcessing;
  std::optional<std::string> result{};  ///< the handler's result (usually JSON)
  std::optional<std::string> error{};   ///< the failure message, when FAILED
  bool retryable = true;                ///< for FAILED: may the next delivery run again?
  Timestamp first_seen_at{};
  std::optional<Timestamp> completed_at{};
  std::uint32_t attempt = 0;  ///< how many times the key was claimed
  Token token = 0;            ///< the current owner's fencing token
  Timestamp lease_expires_at{};
  std::string fingerprint{};  ///< of the payload; empty when not checked
  Timestamp expires_at{};
  std::optional<Checkpoint> checkpoint{};  ///< last recovery point, if any

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
std::string_view to_string(ClaimStatus status) noexcept;

/// How an acquired claim came about.
enum class AcquireKind : std::uint8_t {
  kNew,       ///< the key was absent (or expired)
  kTakeover,  ///< a PROCESSING record whose lease had expired
  kRetry,     ///< a FAILED record marked retryable
};
std::string_view to_string(AcquireKind kind) noexcept;

struct ClaimOutcome {
  ClaimStatus status = ClaimStatus::kAcquired;
  AcquireKind acquire_kind = AcquireKind::kNew;  ///< meaningful when acquired
  Token token = 0;                               ///< when acquired
  std::uint32_t attempt = 0;                     ///< when acquired
  Timestamp lease_expires_at{};                  ///< when acquired
  /// When acquired by takeover or retry: the previous owner's last
  /// checkpoint, so the new owner can resume instead of redoing.
  std::optional<Checkpoint> checkpoint{};
  /// When not acquired: the record as it stands (the cached result, the
  /// stored error, or the live owner's lease).
  std::optional<IdempotencyRecord> record{};

  bool acquired() const noexcept { return status == ClaimStatus::kAcquired; }
};

}  // namespace idem
