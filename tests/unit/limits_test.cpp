// Saturating time arithmetic (limits.h): a deadline never wraps around.
#include "idem/core/limits.h"

#include <gtest/gtest.h>

#include "idem/core/record.h"

namespace idem {
namespace {

using std::chrono::milliseconds;

TEST(SaturatingAdd, AddsWithinRange) {
  const Timestamp t(milliseconds(1'700'000'000'000));
  EXPECT_EQ(saturating_add(t, milliseconds(5)), t + milliseconds(5));
  EXPECT_EQ(saturating_add(t, milliseconds(-5)), t - milliseconds(5));
  EXPECT_EQ(saturating_sub(t, milliseconds(5)), t - milliseconds(5));
  EXPECT_EQ(saturating_add(t, kMaxTtl), t + kMaxTtl);
}

TEST(SaturatingAdd, ClampsInsteadOfOverflowing) {
  const Timestamp t(milliseconds(1'700'000'000'000));
  EXPECT_EQ(saturating_add(t, milliseconds::max()), Timestamp::max());
  EXPECT_EQ(saturating_sub(t, milliseconds::min()), Timestamp::max());
  const Timestamp before_epoch(milliseconds(-1000));
  EXPECT_EQ(saturating_add(before_epoch, milliseconds::min()), Timestamp::min());
  EXPECT_EQ(saturating_sub(before_epoch, milliseconds::max()), Timestamp::min());
  // Far, but representable: exact, not clamped.
  EXPECT_EQ(saturating_add(t, milliseconds::min()).time_since_epoch().count(),
            t.time_since_epoch().count() + milliseconds::min().count());
  EXPECT_EQ(saturating_add(Timestamp::max(), milliseconds(1)), Timestamp::max());
  EXPECT_EQ(saturating_add(Timestamp::min(), milliseconds(-1)), Timestamp::min());
}

TEST(SaturatingAdd, NanosecondClocksClampBeforeTheUnitConversion) {
  // milliseconds::max() in nanoseconds does not fit: the conversion itself
  // must saturate, not only the sum.
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(saturating_add(now, milliseconds::max()), std::chrono::steady_clock::time_point::max());
  EXPECT_EQ(saturating_add(now, milliseconds(3)), now + milliseconds(3));
  static_assert(saturating_add(Timestamp(milliseconds(1)), milliseconds(2)) == Timestamp(milliseconds(3)));
}

}  // namespace
}  // namespace idem
