// The NATS consumer's per-message rules (policy.h) and its dead letters
// (dead_letter.h), without a server: every row of the contract in nats.h.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "idem/integrations/nats.h"
#include "integrations/nats/dead_letter.h"
#include "integrations/nats/policy.h"

namespace {

using namespace std::chrono_literals;
using idem::ClaimOutcome;
using idem::ClaimStatus;
using idem::nats::DeadLetterReason;
using idem::nats::MessageOutcome;
using idem::nats::detail::Decision;
using idem::nats::detail::Policy;
using Action = Decision::Action;

const idem::Timestamp kNow = idem::Timestamp(std::chrono::milliseconds(1'700'000'000'000));

ClaimOutcome outcome(ClaimStatus status, std::uint32_t attempt = 1) {
  ClaimOutcome o;
  o.status = status;
  o.attempt = attempt;
  o.token = 7;
  return o;
}

TEST(NatsPolicy, NewAndCompletedAndInProgress) {
  Policy p;
  EXPECT_EQ(after_claim(p, outcome(ClaimStatus::kAcquired), 1, kNow, 0).action, Action::kRunHandler);
  const Decision dup = after_claim(p, outcome(ClaimStatus::kCompleted), 2, kNow, 0);
  EXPECT_EQ(dup.action, Action::kAck);
  EXPECT_EQ(dup.outcome, MessageOutcome::kAckedDuplicate);
  const Decision busy = after_claim(p, outcome(ClaimStatus::kInProgress), 1, kNow, 0);
  EXPECT_EQ(busy.action, Action::kNak) << "an in-progress duplicate is never acked";
  EXPECT_EQ(busy.outcome, MessageOutcome::kNakInProgress);
  EXPECT_GT(busy.delay.count(), 0);
}

TEST(NatsPolicy, InProgressDelayBacksOffWithinTheOwnersLease) {
  using idem::nats::detail::in_progress_delay;
  Policy p;
  p.lease = 30s;
  p.heartbeat = 10s;
  p.in_progress_backoff = 100ms;
  idem::IdempotencyRecord owner;
  owner.lease_expires_at = kNow + 25s;
  EXPECT_EQ(in_progress_delay(p, &owner, kNow, 1), 100ms) << "most originals finish fast: look again soon";
  EXPECT_EQ(in_progress_delay(p, &owner, kNow, 3), 400ms);
  EXPECT_EQ(in_progress_delay(p, &owner, kNow, 40), 10s) << "at most one heartbeat";
  owner.lease_expires_at = kNow + 2s;
  const auto near_end = in_progress_delay(p, &owner, kNow, 40);
  EXPECT_GE(near_end, 2s) << "come back once the lease may have run out";
  EXPECT_LE(near_end, 2s + 2s);
  owner.lease_expires_at = kNow - 5s;
  EXPECT_EQ(in_progress_delay(p, &owner, kNow, 9), 50ms) << "a dead owner: take over at once (the floor)";
  EXPECT_EQ(in_progress_delay(p, nullptr, kNow, 100), 10s);
  p.in_progress_delay = 300ms;
  EXPECT_EQ(in_progress_delay(p, &owner, kNow, 1), 300ms);
}

TEST(NatsPolicy, RetryDelayGrowsWithTheDeliveryCountUpToTheCap) {
  Policy p;
  p.retry_backoff = 100ms;
  p.retry_backoff_max = 1s;
  EXPECT_EQ(idem::nats::detail::retry_delay(p, 1, 0), 100ms);
  EXPECT_EQ(idem::nats::detail::retry_delay(p, 2, 0), 200ms);
  EXPECT_EQ(idem::nats::detail::retry_delay(p, 4, 0), 800ms);
  EXPECT_EQ(idem::nats::detail::retry_delay(p, 5, 0), 1s);
  EXPECT_EQ(idem::nats::detail::retry_delay(p, 1'000'000, 0), 1s);
  const auto jittered = idem::nats::detail::retry_delay(p, 3, 0.999);
  EXPECT_LT(jittered, 400ms);
  EXPECT_GE(jittered, 320ms) << "at most 20% jitter";
}

TEST(NatsPolicy, FailuresAndMaxDeliver) {
  Policy p;
  p.max_deliver = 3;
  const Decision retry = after_handler_failure(p, idem::FailureKind::kRetryable, 1, 1, "boom", 0);
  EXPECT_EQ(retry.action, Action::kNak);
  EXPECT_EQ(retry.outcome, MessageOutcome::kNakRetry);
  const Decision last = after_handler_failure(p, idem::FailureKind::kRetryable, 3, 7, "boom", 0);
  EXPECT_EQ(last.action, Action::kDeadLetter);
  EXPECT_EQ(last.reason, DeadLetterReason::kMaxDeliver);
  EXPECT_NE(last.detail.find("boom"), std::string::npos);
  const Decision terminal = after_handler_failure(p, idem::FailureKind::kTerminal, 1, 1, "declined", 0);
  EXPECT_EQ(terminal.action, Action::kDeadLetter);
  EXPECT_EQ(terminal.reason, DeadLetterReason::kTerminal);
  // Owners that died mid-handler raise the attempt without a failure.
  const Decision crashed = after_claim(p, outcome(ClaimStatus::kAcquired, 4), 9, kNow, 0);
  EXPECT_EQ(crashed.action, Action::kDeadLetter);
  EXPECT_EQ(crashed.reason, DeadLetterReason::kMaxDeliver);
  EXPECT_TRUE(crashed.fail_record_first);
  p.max_deliver = 0;
  EXPECT_EQ(after_handler_failure(p, idem::FailureKind::kRetryable, 100, 100, "x", 0).action, Action::kNak);
}

TEST(NatsPolicy, TerminalReplayAndMismatchAreDeadLetters) {
  Policy p;
  ClaimOutcome failed = outcome(ClaimStatus::kFailed);
  failed.record = idem::IdempotencyRecord{};
  failed.record->error = "card declined";
  const Decision replay = after_claim(p, failed, 1, kNow, 0);
  EXPECT_EQ(replay.reason, DeadLetterReason::kTerminal);
  EXPECT_NE(replay.detail.find("card declined"), std::string::npos);
  EXPECT_EQ(after_claim(p, outcome(ClaimStatus::kMismatch), 1, kNow, 0).reason, DeadLetterReason::kMismatch);
  EXPECT_EQ(idem::nats::detail::after_undecodable("bad json").reason, DeadLetterReason::kUndecodable);
}

TEST(NatsPolicy, StoreErrorsAreNakedNeverDeadLettered) {
  Policy p;
  for (auto code :
       {idem::ErrorCode::kUnavailable, idem::ErrorCode::kTimeout, idem::ErrorCode::kInternal, idem::ErrorCode::kCorrupt,
        idem::ErrorCode::kInvalidConfiguration, idem::ErrorCode::kResourceExhausted}) {
    const Decision d = after_claim_error(p, idem::Error(code, "down"), 50, 0);
    EXPECT_EQ(d.action, Action::kNak) << idem::to_string(code);
    EXPECT_EQ(d.outcome, MessageOutcome::kNakStoreError);
  }
  const Decision bad_key = after_claim_error(p, idem::Error(idem::ErrorCode::kInvalidArgument, "empty key"), 1, 0);
  EXPECT_EQ(bad_key.reason, DeadLetterReason::kInvalidKey);
  const Decision lost = after_write_error(p, idem::Error(idem::ErrorCode::kLeaseLost, "newer owner"), 1, 0);
  EXPECT_EQ(lost.outcome, MessageOutcome::kNakLeaseLost);
  EXPECT_EQ(after_write_error(p, idem::Error(idem::ErrorCode::kTimeout, "slow"), 1, 0).outcome,
            MessageOutcome::kNakStoreError);
}

TEST(NatsPolicy, ANakOnTheServersLastDeliveryBecomesADeadLetter) {
  Policy p;
  p.server_max_deliver = 4;
  const Decision nak = after_claim_error(p, idem::Error(idem::ErrorCode::kUnavailable, "down"), 3, 0);
  EXPECT_EQ(last_delivery(p, 3, nak).action, Action::kNak);
  const Decision converted = last_delivery(p, 4, nak);
  EXPECT_EQ(converted.action, Action::kDeadLetter);
  EXPECT_EQ(converted.reason, DeadLetterReason::kMaxDeliver);
  Decision ack;
  EXPECT_EQ(last_delivery(p, 9, ack).action, Action::kAck);
  p.server_max_deliver = -1;
  EXPECT_EQ(last_delivery(p, 1000, nak).action, Action::kNak);
}

TEST(NatsDeadLetter, HeadersCarryReasonOriginAndTheOriginalHeaders) {
  const idem::nats::Headers original = {{"X-Trace", "abc"}, {"nats-msg-id", "m1"}, {"Nats-Expected-Stream", "S"}};
  idem::nats::detail::DeadLetterInput in;
  in.reason = DeadLetterReason::kTerminal;
  in.detail = "line one\r\nline two";
  in.subject = "orders.paid";
  in.stream = "ORDERS";
  in.stream_sequence = 42;
  in.delivery = 3;
  in.attempt = 2;
  in.key = "idempotency:events:o-1";
  in.event_id = "o-1";
  in.original = &original;
  const auto headers = idem::nats::detail::dead_letter_headers(in);
  auto get = [&](std::string_view name) {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return std::string("<absent>");
  };
  EXPECT_EQ(get("Idem-Dead-Letter-Reason"), "terminal");
  EXPECT_EQ(get("Idem-Dead-Letter-Error"), "line one  line two");
  EXPECT_EQ(get("Idem-Original-Subject"), "orders.paid");
  EXPECT_EQ(get("Idem-Original-Stream"), "ORDERS");
  EXPECT_EQ(get("Idem-Original-Sequence"), "42");
  EXPECT_EQ(get("Idem-Delivery-Count"), "3");
  EXPECT_EQ(get("Idem-Attempt"), "2");
  EXPECT_EQ(get("Idem-Key"), "idempotency:events:o-1");
  EXPECT_EQ(get("X-Trace"), "abc");
  EXPECT_EQ(get("Idem-Original-nats-msg-id"), "m1");
  EXPECT_EQ(get("Idem-Original-Nats-Expected-Stream"), "S");
  EXPECT_EQ(get("Nats-Expected-Stream"), "<absent>") << "server-steering headers must not reach the DLQ stream";
  EXPECT_EQ(idem::nats::detail::dead_letter_msg_id(in), "idem-dlq:idempotency:events:o-1");
  in.reason = DeadLetterReason::kMismatch;
  EXPECT_EQ(idem::nats::detail::dead_letter_msg_id(in), "idem-dlq:ORDERS:42") << "mismatched copies differ";
}

TEST(NatsDeadLetter, HeaderValuesAreCutAtACharacterBoundary) {
  const std::string text =
      "ab\xC3\xA9"
      "cd";  // a, b, e-acute (2 bytes), c, d
  EXPECT_EQ(idem::nats::detail::header_value(text, 3), "ab");
  EXPECT_EQ(idem::nats::detail::header_value(text, 4), "ab\xC3\xA9");
  EXPECT_EQ(idem::nats::detail::header_value(std::string(5000, 'x'), 1024).size(), 1024U);
  EXPECT_EQ(idem::nats::detail::header_value(std::string("a\0b\x7f", 4), 10), "a b ");
}

TEST(NatsOptions, AckWaitFollowsTheLeaseAndOptionsAreChecked) {
  EXPECT_EQ(idem::nats::ack_wait_for_lease(30s), 33s);
  EXPECT_EQ(idem::nats::ack_wait_for_lease(500ms), 600ms);
  EXPECT_EQ(idem::nats::default_dead_letter_subject("ORDERS"), "idem.dlq.ORDERS");
  idem::nats::ConsumerOptions o;
  EXPECT_FALSE(o.validate().ok());
  o.stream = "S";
  o.durable = "d";
  EXPECT_TRUE(o.validate().ok());
  o.concurrency = 0;
  EXPECT_EQ(o.validate().error().code(), idem::ErrorCode::kInvalidConfiguration);
  EXPECT_FALSE(idem::nats::ConnectionOptions{.url = " , "}.validate().ok());
  EXPECT_EQ(idem::nats::to_string(MessageOutcome::kNakInProgress), "nak_in_progress");
  EXPECT_EQ(idem::nats::to_string(DeadLetterReason::kMaxDeliver), "max_deliver");
}

}  // namespace
