/// @file idem/core/clock.h
///
/// Clock lets tests move time forward instead of sleeping through leases and
/// TTLs. Stores that keep time themselves (memory, SQLite) take one in their
/// options; network stores use the server's clock.
///
///   auto clock = std::make_shared<idem::ManualClock>();
///   auto store = idem::MemoryStore::create({.clock = clock});
///   clock->advance(std::chrono::seconds(31));  // the lease has now expired
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "idem/core/record.h"

namespace idem {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp now() const noexcept = 0;
};

/// SystemClock reads std::chrono::system_clock.
class SystemClock final : public Clock {
 public:
  Timestamp now() const noexcept override {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  }
};

/// The process-wide SystemClock.
std::shared_ptr<Clock> system_clock();

/// ManualClock only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Timestamp start = Timestamp(std::chrono::milliseconds(1'700'000'000'000)))
      : now_ms_(start.time_since_epoch().count()) {}
  Timestamp now() const noexcept override {
    return Timestamp(std::chrono::milliseconds(now_ms_.load(std::memory_order_acquire)));
  }
  void advance(std::chrono::milliseconds by) noexcept { now_ms_.fetch_add(by.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<std::chrono::milliseconds::rep> now_ms_;
};

}  // namespace idem
