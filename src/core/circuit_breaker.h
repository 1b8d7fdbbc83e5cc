// File: src/core/circuit_breaker.h
//
// CircuitBreaker stops calling a server that keeps failing: after
// `failure_threshold` consecutive calls that got no answer (connection
// refused or broken, timed out) the circuit opens and calls fail fast for
// `open_duration`; then one call is let through as a probe (half-open), whose
// answer closes the circuit and whose failure opens it again. The network
// stores share it (Redis: one per node; PostgreSQL: one per store), so that
// `breaker_threshold` / `breaker_open_ms` mean the same on both.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

#include "idem/core/store.h"

namespace idem::detail {

struct CircuitBreakerSettings {
  bool enabled = true;
  std::uint32_t failure_threshold = 5;
  std::chrono::milliseconds open_duration{1'000};
};

class CircuitBreaker {
 public:
  // on_change is called after every transition with the new state, outside
  // the lock, on the thread whose call caused it.
  using OnChange = std::function<void(CircuitState)>;

  CircuitBreaker(CircuitBreakerSettings settings, OnChange on_change)
      : settings_(settings), on_change_(std::move(on_change)) {}

  // allow() says whether a call may go to the server now; false counts the
  // call as rejected.
  bool allow();
  // record() reports a call that allow() let through: `answered` means the
  // server answered it (an error reply included).
  void record(bool answered);
  // release() gives back a half-open probe that allow() granted but that was
  // never sent.
  void release();

  CircuitState state() const noexcept { return state_.load(std::memory_order_acquire); }
  std::uint64_t rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }
  const CircuitBreakerSettings& settings() const noexcept { return settings_; }

 private:
  CircuitBreakerSettings settings_;
  OnChange on_change_;
  std::mutex mutex_;  // serializes transitions; reads of state_ need no lock
  std::atomic<CircuitState> state_{CircuitState::kClosed};
  std::atomic<std::uint32_t> failures_{0};
  std::atomic<std::uint64_t> rejected_{0};
  bool probing_ = false;
  std::chrono::steady_clock::time_point opened_at_{};
};

}  // namespace idem::detail
