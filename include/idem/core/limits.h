/// @file idem/core/limits.h
/// @brief The bounds of every duration Idem accepts, and time arithmetic that
/// saturates instead of overflowing.
///
/// A deadline is always `now + duration`; with an unchecked duration near the
/// top of its range that sum overflows (undefined behaviour), and a record can
/// be written already expired, which silently breaks "at most once". Options
/// are checked against these bounds (CheckerOptions::validate(),
/// ProcessorOptions::validate()), store requests are checked again by the
/// store (validate_claim_request() and friends in store.h), and every store
/// computes its deadlines with saturating_add().
///
/// @code
/// const idem::Timestamp lease_end = idem::saturating_add(now, request.lease);
/// if (options.ttl > idem::kMaxTtl) return ...;  // validate() does this for you
/// @endcode
#pragma once

#include <chrono>
#include <limits>
#include <ratio>
#include <type_traits>

namespace idem {

/// kMaxTtl is the longest a finished record may be kept: 10 years (3650 days).
/// Longer is indistinguishable from "forever" and only risks overflow.
inline constexpr std::chrono::milliseconds kMaxTtl = std::chrono::hours(24 * 3650);

/// kMaxLease is the longest a claim may stay exclusive: 7 days. A worker that
/// needs longer keeps a shorter lease alive with the heartbeat.
inline constexpr std::chrono::milliseconds kMaxLease = std::chrono::hours(24 * 7);

/// kMaxInProgressWait is the longest a duplicate may wait for its original
/// (ProcessorOptions::wait_for_in_progress): 1 hour. Brokers redeliver long
/// before that; waiting longer only ties up a consumer thread.
inline constexpr std::chrono::milliseconds kMaxInProgressWait = std::chrono::hours(1);

/// saturating_add() is `time + duration`, clamped to the range of the time
/// point's type instead of overflowing. Works for Timestamp (record times)
/// and std::chrono::steady_clock::time_point (local deadlines) alike: any
/// time point with an integral tick count at least as fine as milliseconds.
///
/// @code
/// auto deadline = idem::saturating_add(std::chrono::steady_clock::now(), timeout);
/// @endcode
template <typename Clock, typename Duration>
constexpr std::chrono::time_point<Clock, Duration> saturating_add(std::chrono::time_point<Clock, Duration> time,
                                                                  std::chrono::milliseconds duration) noexcept {
  static_assert(std::ratio_less_equal_v<typename Duration::period, std::milli>,
                "saturating_add needs a time point at least as fine as milliseconds");
  static_assert(std::is_integral_v<typename Duration::rep>, "saturating_add needs an integral tick count");
  using TimePoint = std::chrono::time_point<Clock, Duration>;
  using Rep = typename Duration::rep;
  constexpr Rep kMax = std::numeric_limits<Rep>::max();
  constexpr Rep kMin = std::numeric_limits<Rep>::min();
  constexpr Rep kTicksPerMs = Duration(std::chrono::milliseconds(1)).count();
  const auto ms = duration.count();
  if (ms > kMax / kTicksPerMs) return TimePoint::max();
  if (ms < kMin / kTicksPerMs) return TimePoint::min();
  const Rep ticks = static_cast<Rep>(ms) * kTicksPerMs;
  const Rep base = time.time_since_epoch().count();
  if (ticks > 0 && base > kMax - ticks) return TimePoint::max();
  if (ticks < 0 && base < kMin - ticks) return TimePoint::min();
  return TimePoint(Duration(base + ticks));
}

/// saturating_sub() is `time - duration`, clamped like saturating_add().
///
/// @code
/// const idem::Timestamp cutoff = idem::saturating_sub(now, options.older_than);
/// @endcode
template <typename Clock, typename Duration>
constexpr std::chrono::time_point<Clock, Duration> saturating_sub(std::chrono::time_point<Clock, Duration> time,
                                                                  std::chrono::milliseconds duration) noexcept {
  // -min() does not exist; min() + 1 ms is as good as "infinitely far".
  if (duration == std::chrono::milliseconds::min()) duration += std::chrono::milliseconds(1);
  return saturating_add(time, -duration);
}

}  // namespace idem
