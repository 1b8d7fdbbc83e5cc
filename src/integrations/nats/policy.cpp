#include "integrations/nats/policy.h"

#include <algorithm>

namespace idem::nats::detail {
namespace {

using std::chrono::milliseconds;

Decision nak(MessageOutcome outcome, milliseconds delay, std::string detail) {
  Decision d;
  d.action = Decision::Action::kNak;
  d.outcome = outcome;
  d.delay = delay;
  d.detail = std::move(detail);
  return d;
}

Decision dead_letter(DeadLetterReason reason, std::string detail) {
  Decision d;
  d.action = Decision::Action::kDeadLetter;
  d.outcome = MessageOutcome::kDeadLettered;
  d.reason = reason;
  d.detail = std::move(detail);
  return d;
}

}  // namespace

milliseconds retry_delay(const Policy& policy, std::uint64_t delivery, double jitter) noexcept {
  const milliseconds cap = std::max(policy.retry_backoff_max, policy.retry_backoff);
  milliseconds delay = policy.retry_backoff;
  // Doubling stops at the cap, so this never overflows whatever the count.
  for (std::uint64_t i = 1; i < delivery && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  jitter = std::clamp(jitter, 0.0, 1.0);
  const auto shaved = static_cast<milliseconds::rep>(static_cast<double>(delay.count()) * 0.2 * jitter);
  return std::max(milliseconds(1), delay - milliseconds(shaved));
}

milliseconds in_progress_delay(const Policy& policy, const IdempotencyRecord* owner, Timestamp now,
                               std::uint64_t delivery) noexcept {
  if (policy.in_progress_delay.count() > 0) return policy.in_progress_delay;
  constexpr milliseconds kFloor(50);
  milliseconds ceiling = std::max(kFloor, policy.heartbeat);
  if (owner != nullptr) {
    // A margin past the lease's end, so the redelivery finds it expired and
    // takes over instead of bouncing once more.
    const milliseconds margin = std::max(milliseconds(20), policy.lease / 20);
    ceiling = std::min(ceiling, std::max(kFloor, owner->lease_expires_at - now + margin));
  }
  milliseconds delay = std::max(kFloor, policy.in_progress_backoff);
  for (std::uint64_t i = 1; i < delivery && delay < ceiling; ++i) delay *= 2;
  return std::min(delay, ceiling);
}

Decision after_undecodable(std::string detail) {
  return dead_letter(DeadLetterReason::kUndecodable, std::move(detail));
}

Decision after_claim(const Policy& policy, const ClaimOutcome& outcome, std::uint64_t delivery, Timestamp now,
                     double jitter) {
  switch (outcome.status) {
    case ClaimStatus::kAcquired: {
      if (policy.max_deliver > 0 && outcome.attempt > policy.max_deliver) {
        // Earlier owners died mid-handler (each takeover raised the attempt):
        // the message may be what kills them.
        Decision d = dead_letter(DeadLetterReason::kMaxDeliver,
                                 "attempt " + std::to_string(outcome.attempt) + " exceeds max_deliver=" +
                                     std::to_string(policy.max_deliver) + " (earlier owners died mid-handler)");
        d.fail_record_first = true;
        return d;
      }
      Decision d;
      d.action = Decision::Action::kRunHandler;
      return d;
    }
    case ClaimStatus::kInProgress: {
      const IdempotencyRecord* owner = outcome.record ? &*outcome.record : nullptr;
      return nak(MessageOutcome::kNakInProgress, in_progress_delay(policy, owner, now, delivery),
                 "the key is in progress on another worker");
    }
    case ClaimStatus::kCompleted: {
      Decision d;
      d.action = Decision::Action::kAck;
      d.outcome = MessageOutcome::kAckedDuplicate;
      return d;
    }
    case ClaimStatus::kFailed: {
      std::string error = outcome.record && outcome.record->error ? *outcome.record->error : std::string();
      return dead_letter(DeadLetterReason::kTerminal, "replayed terminal failure: " + error);
    }
    case ClaimStatus::kMismatch:
      return dead_letter(DeadLetterReason::kMismatch, "the idempotency key was already used with a different payload");
  }
  (void)jitter;
  return nak(MessageOutcome::kNakStoreError, policy.retry_backoff, "unknown claim status");
}

Decision after_claim_error(const Policy& policy, const Error& error, std::uint64_t delivery, double jitter) {
  if (error.code() == ErrorCode::kInvalidArgument) return dead_letter(DeadLetterReason::kInvalidKey, error.message());
  // Everything else is the store's trouble (or the configuration's:
  // kInvalidConfiguration), not the message's: redeliver, however long it
  // lasts (fail closed), never dead-letter.
  return nak(MessageOutcome::kNakStoreError, retry_delay(policy, delivery, jitter), error.to_string());
}

Decision after_handler_failure(const Policy& policy, FailureKind kind, std::uint32_t attempt, std::uint64_t delivery,
                               std::string detail, double jitter) {
  if (kind == FailureKind::kTerminal) return dead_letter(DeadLetterReason::kTerminal, std::move(detail));
  if (policy.max_deliver > 0 && attempt >= policy.max_deliver) {
    return dead_letter(DeadLetterReason::kMaxDeliver, "attempt " + std::to_string(attempt) + " of " +
                                                          std::to_string(policy.max_deliver) + " failed: " + detail);
  }
  return nak(MessageOutcome::kNakRetry, retry_delay(policy, delivery, jitter), std::move(detail));
}

Decision after_write_error(const Policy& policy, const Error& error, std::uint64_t delivery, double jitter) {
  if (error.code() == ErrorCode::kLeaseLost) {
    // A newer owner runs the key; its outcome decides. Come back when it is
    // likely done, and never ack this copy meanwhile.
    return nak(MessageOutcome::kNakLeaseLost, in_progress_delay(policy, nullptr, Timestamp{}, delivery),
               error.to_string());
  }
  return nak(MessageOutcome::kNakStoreError, retry_delay(policy, delivery, jitter), error.to_string());
}

Decision last_delivery(const Policy& policy, std::uint64_t delivery, Decision decision) {
  if (decision.action != Decision::Action::kNak || policy.server_max_deliver <= 0) return decision;
  if (delivery < static_cast<std::uint64_t>(policy.server_max_deliver)) return decision;
  Decision d = dead_letter(DeadLetterReason::kMaxDeliver,
                           "delivery " + std::to_string(delivery) + " is the consumer's MaxDeliver (" +
                               std::to_string(policy.server_max_deliver) + "); would have been nak'd: " +
                               std::string(to_string(decision.outcome)) + ": " + decision.detail);
  return d;
}

}  // namespace idem::nats::detail
