#include "idem/core/record.h"

#include <array>
#include <cstdio>
#include <ctime>

#include "idem/core/clock.h"
#include "idem/core/observer.h"

namespace idem {

std::string format_rfc3339(Timestamp time) {
  const auto ms_total = time.time_since_epoch().count();
  auto seconds = static_cast<std::time_t>(ms_total / 1000);
  auto ms = ms_total % 1000;
  if (ms < 0) {  // before 1970: floor, so the fraction stays positive
    ms += 1000;
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  std::array<char, 40> buffer{};
  const std::size_t n = std::strftime(buffer.data(), buffer.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  std::array<char, 8> fraction{};
  std::snprintf(fraction.data(), fraction.size(), ".%03dZ", static_cast<int>(ms));
  return std::string(buffer.data(), n) + fraction.data();
}

std::string_view to_string(ProcessingStatus status) noexcept {
  switch (status) {
    case ProcessingStatus::kProcessing: return "PROCESSING";
    case ProcessingStatus::kCompleted: return "COMPLETED";
    case ProcessingStatus::kFailed: return "FAILED";
  }
  return "UNKNOWN";
}

std::optional<ProcessingStatus> parse_status(std::string_view text) noexcept {
  if (text == "PROCESSING") return ProcessingStatus::kProcessing;
  if (text == "COMPLETED") return ProcessingStatus::kCompleted;
  if (text == "FAILED") return ProcessingStatus::kFailed;
  return std::nullopt;
}

std::string_view to_string(ClaimStatus status) noexcept {
  switch (status) {
    case ClaimStatus::kAcquired: return "acquired";
    case ClaimStatus::kInProgress: return "in_progress";
    case ClaimStatus::kCompleted: return "completed";
    case ClaimStatus::kFailed: return "failed";
    case ClaimStatus::kMismatch: return "mismatch";
  }
  return "unknown";
}

std::string_view to_string(AcquireKind kind) noexcept {
  switch (kind) {
    case AcquireKind::kNew: return "new";
    case AcquireKind::kTakeover: return "takeover";
    case AcquireKind::kRetry: return "retry";
  }
  return "unknown";
}

std::string_view to_string(StoreOp op) noexcept {
  switch (op) {
    case StoreOp::kClaim: return "claim";
    case StoreOp::kClaimMany: return "claim_many";
    case StoreOp::kComplete: return "complete";
    case StoreOp::kFail: return "fail";
    case StoreOp::kExtend: return "extend";
    case StoreOp::kCheckpoint: return "checkpoint";
    case StoreOp::kGet: return "get";
    case StoreOp::kRemove: return "remove";
  }
  return "unknown";
}

std::string_view to_string(HandlerOutcome outcome) noexcept {
  switch (outcome) {
    case HandlerOutcome::kCompleted: return "completed";
    case HandlerOutcome::kFailedRetryable: return "failed_retryable";
    case HandlerOutcome::kFailedTerminal: return "failed_terminal";
    case HandlerOutcome::kLeaseLost: return "lease_lost";
    case HandlerOutcome::kAbandoned: return "abandoned";
  }
  return "unknown";
}

std::string_view to_string(CircuitState state) noexcept {
  switch (state) {
    case CircuitState::kClosed: return "closed";
    case CircuitState::kHalfOpen: return "half_open";
    case CircuitState::kOpen: return "open";
  }
  return "unknown";
}

std::shared_ptr<Clock> system_clock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<SystemClock>();
  return clock;
}

}  // namespace idem
