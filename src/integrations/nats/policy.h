// File: src/integrations/nats/policy.h
//
// What the consumer does with a message at each step, as pure functions of
// the claim outcome, the error and the counters: no I/O, so every rule of
// the per-message contract (see nats.h) is unit tested on its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "idem/core/error.h"
#include "idem/core/processor.h"
#include "idem/core/record.h"
#include "idem/integrations/nats.h"

namespace idem::nats::detail {

struct Policy {
  std::chrono::milliseconds lease{30'000};
  std::chrono::milliseconds heartbeat{10'000};
  std::chrono::milliseconds retry_backoff{250};
  std::chrono::milliseconds retry_backoff_max{30'000};
  std::chrono::milliseconds in_progress_delay{0};  // 0: backoff bounded by the owner's lease
  std::chrono::milliseconds in_progress_backoff{100};
  std::uint32_t max_deliver = 5;  // handler attempts; 0: unlimited
  // The durable consumer's own MaxDeliver (an existing consumer may have
  // one): at that delivery a nak would make the server drop the message.
  std::int64_t server_max_deliver = -1;  // <= 0: unlimited
};

// Decision is what to do with a message after one step.
struct Decision {
  enum class Action : std::uint8_t {
    kRunHandler,  // the key is ours: run the handler
    kAck,
    kNak,         // with `delay`
    kDeadLetter,  // publish to the dead-letter subject, then term
  };
  Action action = Action::kAck;
  MessageOutcome outcome = MessageOutcome::kAcked;
  std::chrono::milliseconds delay{0};
  std::optional<DeadLetterReason> reason{};
  std::string detail{};
  // Before dead-lettering an acquired key, mark it FAILED (retryable), so
  // that its lease does not hold back other copies until it runs out.
  bool fail_record_first = false;
};

// retry_delay(): retry_backoff x 2^(delivery-1), capped, minus up to 20%
// jitter (`jitter` in [0, 1)) so that messages nak'd together do not all
// come back in the same instant.
std::chrono::milliseconds retry_delay(const Policy& policy, std::uint64_t delivery, double jitter) noexcept;

// in_progress_delay(): the fixed delay when configured; otherwise
// in_progress_backoff x 2^(delivery-1) (most originals finish within
// milliseconds, so the first look comes soon), but never past the owner's
// lease end plus a margin (a dead owner is taken over right away), at most
// one heartbeat interval and at least 50 ms.
std::chrono::milliseconds in_progress_delay(const Policy& policy, const IdempotencyRecord* owner, Timestamp now,
                                            std::uint64_t delivery) noexcept;

Decision after_undecodable(std::string detail);
Decision after_claim(const Policy& policy, const ClaimOutcome& outcome, std::uint64_t delivery, Timestamp now,
                     double jitter);
Decision after_claim_error(const Policy& policy, const Error& error, std::uint64_t delivery, double jitter);
Decision after_handler_failure(const Policy& policy, FailureKind kind, std::uint32_t attempt, std::uint64_t delivery,
                               std::string detail, double jitter);
// A completion or failure write that did not land (the handler's verdict is
// unknown to the store).
Decision after_write_error(const Policy& policy, const Error& error, std::uint64_t delivery, double jitter);

// last_delivery(): a nak decided at the server's last allowed delivery
// becomes a dead letter (reason max_deliver): the server would otherwise
// drop the message without telling anyone.
Decision last_delivery(const Policy& policy, std::uint64_t delivery, Decision decision);

}  // namespace idem::nats::detail
