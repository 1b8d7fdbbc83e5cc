#include "idem/core/checker.h"

#include <gtest/gtest.h>

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

TEST_F(CheckerTest, OversizedResultIsRefusedAndNothingIsStored) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create({.clock = clock_}),
                                                      CheckerOptions{.max_result_bytes = 16});
  auto claim = checker->claim(make_envelope("e1"));
  ASSERT_TRUE(claim);
  Status status = checker->complete(claim->key, claim->outcome.token, std::string(17, 'x'));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kResultTooLarge);
  auto record = checker->get(claim->key);
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kProcessing);
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
  EXPECT_FALSE(IdempotencyChecker::from_url("memory://", CheckerOptions{.ttl = std::chrono::milliseconds(-1)}));
  EXPECT_FALSE(IdempotencyChecker::from_url("nosuch://x"));
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
