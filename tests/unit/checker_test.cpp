#include "idem/core/checker.h"

#include <gtest/gtest.h>

#include "idem/core/limits.h"
#include "idem/stores/memory.h"
#include "unit/patterns_support.h"

namespace idem {
namespace {

using testing::make_envelope;

class CheckerTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<IdempotencyChecker> checker_ =
      std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock_}));
};

TEST_F(CheckerTest, ManualPatternClaimCompleteReplay) {
  auto env = make_envelope("e1");
  auto claim = checker_->mark_processing(env);
  ASSERT_TRUE(claim);
  ASSERT_TRUE(claim->outcome.acquired());
  EXPECT_EQ(claim->key, "idempotency:events:e1");
  EXPECT_EQ(claim->outcome.attempt, 1U);

  auto again = checker_->mark_processing(env);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->outcome.status, ClaimStatus::kInProgress);

  ASSERT_TRUE(checker_->mark_completed(claim->key, claim->outcome.token, R"({"ok":true})"));
  auto replay = checker_->mark_processing(env);
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->outcome.status, ClaimStatus::kCompleted);
  ASSERT_TRUE(replay->outcome.record);
  EXPECT_EQ(replay->outcome.record->result, R"({"ok":true})");

  auto dup = checker_->is_duplicate("e1");
  ASSERT_TRUE(dup);
  EXPECT_TRUE(*dup);
  auto record = checker_->get_processing_record("e1");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kCompleted);
  EXPECT_EQ((*record)->event_type, "payment.created");

  auto removed = checker_->delete_record("e1");
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
  auto fresh = checker_->mark_processing(env);
  ASSERT_TRUE(fresh && fresh->outcome.acquired());
  EXPECT_GT(fresh->outcome.token, claim->outcome.token);
}

TEST_F(CheckerTest, PayloadMismatchIsReported) {
  ASSERT_TRUE(checker_->claim(make_envelope("e1", R"({"amount":10})")));
  auto other = checker_->claim(make_envelope("e1", R"({"amount":99})"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->outcome.status, ClaimStatus::kMismatch);
}

TEST_F(CheckerTest, PayloadValidationCanBeTurnedOff) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock_}),
                                                      CheckerOptions{.validate_payload = false});
  ASSERT_TRUE(checker->claim(make_envelope("e1", R"({"amount":10})")));
  auto other = checker->claim(make_envelope("e1", R"({"amount":99})"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->outcome.status, ClaimStatus::kInProgress);
}

// Issue 7 item 2: the manual API keeps the promise of max_result_bytes.
TEST_F(CheckerTest, OversizedResultIsRefusedAndTheRecordBecomesRetryable) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock_}),
                                                      CheckerOptions{.max_result_bytes = 16});
  auto claim = checker->claim(make_envelope("e1"));
  ASSERT_TRUE(claim);
  Status status = checker->complete(claim->key, claim->outcome.token, std::string(17, 'x'));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kResultTooLarge);
  auto record = checker->get(claim->key);
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
  EXPECT_TRUE((*record)->retryable);
  EXPECT_FALSE((*record)->result);
  // The redelivery runs again at once instead of finding it "in progress".
  auto again = checker->claim(make_envelope("e1"));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->outcome.acquired());
  EXPECT_EQ(again->outcome.acquire_kind, AcquireKind::kRetry);
}

TEST_F(CheckerTest, OversizedResultAsyncAlsoMarksTheRecordFailed) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock_}),
                                                      CheckerOptions{.max_result_bytes = 16});
  auto claim = checker->claim(make_envelope("e1"));
  ASSERT_TRUE(claim);
  std::optional<Status> reported;
  checker->complete_async(claim->key, claim->outcome.token, std::string(17, 'x'),
                          [&](Status s) { reported = std::move(s); });
  ASSERT_TRUE(reported);
  ASSERT_FALSE(*reported);
  EXPECT_EQ(reported->error().code(), ErrorCode::kResultTooLarge);
  auto record = checker->get(claim->key);
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
  EXPECT_TRUE((*record)->retryable);
}

// Issue 7 item 1: a ttl at the top of its range used to pass validate(),
// overflow `now + ttl` and write a record that was already expired.
TEST_F(CheckerTest, DurationsOutOfRangeAreConfigurationErrors) {
  using std::chrono::milliseconds;
  for (const CheckerOptions& bad :
       {CheckerOptions{.ttl = milliseconds::max()}, CheckerOptions{.ttl = kMaxTtl + milliseconds(1)},
        CheckerOptions{.ttl = milliseconds(0)}, CheckerOptions{.lease = milliseconds::max()},
        CheckerOptions{.lease = kMaxLease + milliseconds(1)}, CheckerOptions{.lease = milliseconds(-5)}}) {
    Status valid = bad.validate();
    ASSERT_FALSE(valid);
    EXPECT_EQ(valid.error().code(), ErrorCode::kInvalidConfiguration) << valid.error().to_string();
    EXPECT_THROW(IdempotencyChecker(MemoryStore::create(), bad), ConfigurationError);
  }
  EXPECT_TRUE((CheckerOptions{.ttl = kMaxTtl, .lease = kMaxLease}.validate()));
  // At the bounds the promise holds: claimed, completed, replayed.
  IdempotencyChecker checker(MemoryStore::create({.clock = clock_}), {.ttl = kMaxTtl, .lease = kMaxLease});
  auto claim = checker.claim(make_envelope("e1"));
  ASSERT_TRUE(claim && claim->outcome.acquired());
  ASSERT_TRUE(checker.complete(claim->key, claim->outcome.token, "done"));
  auto replay = checker.claim(make_envelope("e1"));
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->outcome.status, ClaimStatus::kCompleted);
}

// Issue 7 item 6: a payload set by hand with other spacing or key order is
// the same payload, not a reused key.
TEST_F(CheckerTest, HandBuiltPayloadIsNotASpuriousMismatch) {
  auto parsed = Envelope::parse(R"({"event_id":"e1","payload":{"b":2,"a":1}})");
  ASSERT_TRUE(parsed);
  Envelope by_hand;
  by_hand.event_id = "e1";
  by_hand.payload = "{ \"a\": 1,\n  \"b\": 2 }";
  auto first = checker_->claim(by_hand);
  ASSERT_TRUE(first && first->outcome.acquired());
  auto second = checker_->claim(*parsed);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->outcome.status, ClaimStatus::kInProgress);
}

TEST_F(CheckerTest, HugeKeyIsAClearError) {
  auto claim = checker_->claim(make_envelope(std::string(100000, 'k')));
  ASSERT_FALSE(claim);
  EXPECT_EQ(claim.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(CheckerTest, ClaimManyKeepsOrder) {
  std::vector<Envelope> batch{make_envelope("a"), make_envelope("b"), make_envelope("a")};
  auto claims = checker_->claim_many(batch);
  ASSERT_TRUE(claims);
  ASSERT_EQ(claims->size(), 3U);
  EXPECT_TRUE((*claims)[0].outcome.acquired());
  EXPECT_TRUE((*claims)[1].outcome.acquired());
  EXPECT_EQ((*claims)[2].outcome.status, ClaimStatus::kInProgress);
  EXPECT_EQ((*claims)[1].key, "idempotency:events:b");
}

TEST_F(CheckerTest, InvalidOptionsAreRejected) {
  EXPECT_FALSE(CheckerOptions{.lease = std::chrono::milliseconds(0)}.validate());
  auto bad_options = IdempotencyChecker::from_url("memory://", CheckerOptions{.ttl = std::chrono::milliseconds(-1)});
  ASSERT_FALSE(bad_options);
  EXPECT_EQ(bad_options.error().code(), ErrorCode::kInvalidConfiguration);
  // Issue 7 item 5: configuration errors are not "invalid envelope".
  for (const char* url : {"nosuch://x", "no-scheme", "memory://?shards=0", "memory://bad/name", "sqlite://"}) {
    auto bad_url = IdempotencyChecker::from_url(url);
    ASSERT_FALSE(bad_url) << url;
    EXPECT_EQ(bad_url.error().code(), ErrorCode::kInvalidConfiguration) << url << ": " << bad_url.error().to_string();
    EXPECT_THROW(Status(bad_url.error()).value(), ConfigurationError);
  }
  EXPECT_THROW(IdempotencyChecker(nullptr), ConfigurationError);
  EXPECT_TRUE(IdempotencyChecker::from_url("memory://"));
}

TEST_F(CheckerTest, HealthReportsReachability) {
  auto store = std::make_shared<testing::OutageStore>(MemoryStore::create());
  IdempotencyChecker checker(store);
  EXPECT_TRUE(checker.health().reachable);
  store->down = true;
  auto health = checker.health();
  EXPECT_FALSE(health.reachable);
  EXPECT_NE(health.detail.find("unavailable"), std::string::npos);
}

}  // namespace
}  // namespace idem
