// File: src/stores/redis/circuit_breaker.h
//
// CircuitBreaker stops calling a server that keeps failing: after
// `failure_threshold` consecutive outage errors the circuit opens and calls
// fail fast for `open_duration`; then one probe is let through (half-open),
// whose success closes it and whose failure reopens it. Each Redis node has
// its own breaker, so one dead Cluster master does not fail the keys of the
// healthy ones.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "idem/core/store.h"
#include "idem/stores/redis.h"

namespace idem::redis_detail {

class CircuitBreaker {
 public:
  // on_change is called after every transition, outside the lock, on the
  // thread whose call caused it.
  CircuitBreaker(RedisCircuitBreakerOptions options, std::function<void()> on_change)
      : options_(options), on_change_(std::move(on_change)) {}

  // allow() says whether a call may go to the server now.
  bool allow();
  // record() reports the outcome of a call that allow() let through: success
  // means the server answered (even with an error reply).
  void record(bool success);

  // release() gives back a half-open probe that allow() granted but that was
  // never sent (another node of the same batch refused the call).
  void release();

  CircuitState state() const noexcept { return state_.load(std::memory_order_acquire); }

 private:
  void notify(bool changed) {
    if (changed && on_change_) on_change_();
  }

  RedisCircuitBreakerOptions options_;
  std::function<void()> on_change_;
  std::mutex mutex_;  // serializes transitions; reads of state_ need no lock
  std::atomic<CircuitState> state_{CircuitState::kClosed};
  std::atomic<std::uint32_t> failures_{0};
  bool probing_ = false;
  std::chrono::steady_clock::time_point opened_at_{};
};

}  // namespace idem::redis_detail
