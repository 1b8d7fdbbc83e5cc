/// @file idem/core/clock.h
/// @brief The wall clock that leases and TTLs are measured against, and a
/// manual one for tests.
///
/// Clock lets tests move time forward instead of sleeping through leases and
/// TTLs. Stores that keep time themselves (memory, SQLite) take one in their
/// options; network stores use the server's clock.
///
/// @code
/// auto clock = std::make_shared<idem::ManualClock>();
/// auto store = idem::MemoryStore::create({.clock = clock});
/// clock->advance(std::chrono::seconds(31));  // the default 30 s lease has now expired
/// @endcode
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "idem/core/record.h"

namespace idem {

/// The source of "now" for stores that keep time themselves (memory, SQLite).
/// Implementations must be thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  /// The current wall-clock time, in milliseconds since the Unix epoch.
  virtual Timestamp now() const noexcept = 0;
};

/// SystemClock reads std::chrono::system_clock.
class SystemClock final : public Clock {
 public:
  /// std::chrono::system_clock::now(), truncated to milliseconds.
  Timestamp now() const noexcept override {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  }
};

/// The process-wide SystemClock.
std::shared_ptr<Clock> system_clock();

/// ManualClock only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  /// Starts at `start`; by default 1,700,000,000,000 ms after the epoch
  /// (2023-11-14T22:13:20Z), a fixed instant so that tests are repeatable.
  explicit ManualClock(Timestamp start = Timestamp(std::chrono::milliseconds(1'700'000'000'000)))
      : now_ms_(start.time_since_epoch().count()) {}
  /// The time set by the constructor plus every advance() so far.
  Timestamp now() const noexcept override {
    return Timestamp(std::chrono::milliseconds(now_ms_.load(std::memory_order_acquire)));
  }
  /// Moves the clock by `by` (negative moves it back). Does not wake
  /// waiters by itself: stores notice on their next poll (see
  /// MemoryStoreOptions::wait_poll_interval).
  void advance(std::chrono::milliseconds by) noexcept { now_ms_.fetch_add(by.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<std::chrono::milliseconds::rep> now_ms_;
};

}  // namespace idem
