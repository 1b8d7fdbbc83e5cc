#include "idem/core/error.h"

#include <gtest/gtest.h>

namespace idem {
namespace {

TEST(Result, HoldsValueOrError) {
  Result<int> good = 4;
  ASSERT_TRUE(good);
  EXPECT_EQ(*good, 4);
  Result<int> bad = Error(ErrorCode::kTimeout, "slow");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().retryable());
  EXPECT_EQ(bad.error().to_string(), "timeout: slow");
}

TEST(Result, ValueOnErrorThrowsTheTypedException) {
  Result<int> unavailable = Error(ErrorCode::kUnavailable, "down");
  EXPECT_THROW((void)unavailable.value(), StoreUnavailableError);
  Status lease = Error(ErrorCode::kLeaseLost, "stale");
  EXPECT_THROW(lease.value(), LeaseLostError);
  Status mismatch = Error(ErrorCode::kMismatch, "other payload");
  EXPECT_THROW(mismatch.value(), KeyMismatchError);
  Status too_large = Error(ErrorCode::kResultTooLarge, "big");
  EXPECT_THROW(too_large.value(), ResultTooLargeError);
  Status invalid = Error(ErrorCode::kInvalidArgument, "bad");
  EXPECT_THROW(invalid.value(), InvalidEnvelopeError);
  EXPECT_NO_THROW(ok_status().value());
}

TEST(Error, OnlyOutagesAreRetryable) {
  EXPECT_TRUE(Error(ErrorCode::kUnavailable, "").retryable());
  EXPECT_FALSE(Error(ErrorCode::kLeaseLost, "").retryable());
  EXPECT_FALSE(Error(ErrorCode::kInvalidArgument, "").retryable());
}

}  // namespace
}  // namespace idem
