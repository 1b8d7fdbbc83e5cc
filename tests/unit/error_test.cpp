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
  Status configuration = Error(ErrorCode::kInvalidConfiguration, "bad option");
  EXPECT_THROW(configuration.value(), ConfigurationError);
  try {
    configuration.value();
  } catch (const InvalidEnvelopeError&) {
    ADD_FAILURE() << "a configuration error must not look like a bad envelope";
  } catch (const ConfigurationError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfiguration);
  }
  EXPECT_NO_THROW(ok_status().value());
}

TEST(Error, OutagesAndInProgressDuplicatesAreRetryable) {
  for (int raw = 0; raw <= static_cast<int>(ErrorCode::kInProgress); ++raw) {
    const auto code = static_cast<ErrorCode>(raw);
    const bool expected =
        code == ErrorCode::kUnavailable || code == ErrorCode::kTimeout || code == ErrorCode::kInProgress;
    EXPECT_EQ(Error(code, "").retryable(), expected) << to_string(code);
    EXPECT_NE(to_string(code), "unknown");
  }
  EXPECT_EQ(to_string(ErrorCode::kInvalidConfiguration), "invalid_configuration");
  EXPECT_EQ(to_string(ErrorCode::kDuplicate), "duplicate");
  EXPECT_EQ(to_string(ErrorCode::kInProgress), "in_progress");
}

}  // namespace
}  // namespace idem
