// File: src/stores/postgres/circuit_breaker.h
//
// CircuitBreaker stops calling a PostgreSQL server that keeps failing: after
// `failure_threshold` consecutive calls that got no answer from the server
// (connection refused or broken, timed out) the circuit opens and calls fail
// fast with kUnavailable for `open_duration`; then one call is let through
// as a probe (half-open), whose answer closes the circuit and whose failure
// opens it again. Without it a down server costs every call a connection
// attempt of up to connect_timeout.
//
// The Redis store has the same machine in src/stores/redis/circuit_breaker.h
// (per node, with its own options type); the two should become one core
// helper. Until then this one follows the Redis one's semantics exactly, so
// that `breaker_threshold` / `breaker_open_ms` mean the same on both.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "idem/core/error.h"
#include "idem/core/store.h"
#include "idem/stores/postgres.h"

namespace idem::pg {

class CircuitBreaker {
 public:
  CircuitBreaker(PostgresCircuitBreakerOptions options, std::function<void(CircuitState)> on_change)
      : options_(options), on_change_(std::move(on_change)) {}

  // allow() says whether a call may go to the server now; false counts the
  // call as rejected.
  bool allow() {
    if (!options_.enabled) return true;
    // Lock-free while closed: every call of every thread goes through here.
    if (state_.load(std::memory_order_acquire) == CircuitState::kClosed) return true;
    std::optional<CircuitState> changed;
    bool ok = true;
    {
      std::lock_guard lock(mutex_);
      const CircuitState state = state_.load(std::memory_order_relaxed);
      if (state == CircuitState::kOpen) {
        if (std::chrono::steady_clock::now() - opened_at_ >= options_.open_duration) {
          state_.store(CircuitState::kHalfOpen, std::memory_order_release);
          probing_ = true;  // this caller is the probe
          changed = CircuitState::kHalfOpen;
        } else {
          ok = false;
        }
      } else if (state == CircuitState::kHalfOpen) {
        ok = !probing_;
        probing_ = true;
      }
    }
    if (!ok) rejected_.fetch_add(1, std::memory_order_relaxed);
    notify(changed);
    return ok;
  }

  // record() reports a call that allow() let through: `answered` means the
  // server answered it (an SQL error included).
  void record(bool answered) {
    if (!options_.enabled) return;
    if (answered && state_.load(std::memory_order_acquire) == CircuitState::kClosed &&
        failures_.load(std::memory_order_relaxed) == 0) {
      return;
    }
    std::optional<CircuitState> changed;
    {
      std::lock_guard lock(mutex_);
      const CircuitState state = state_.load(std::memory_order_relaxed);
      if (answered) {
        failures_.store(0, std::memory_order_relaxed);
        if (state != CircuitState::kClosed) {
          state_.store(CircuitState::kClosed, std::memory_order_release);
          probing_ = false;
          changed = CircuitState::kClosed;
        }
      } else {
        const std::uint32_t failures = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (state == CircuitState::kHalfOpen ||
            (state == CircuitState::kClosed && failures >= options_.failure_threshold)) {
          state_.store(CircuitState::kOpen, std::memory_order_release);
          probing_ = false;
          opened_at_ = std::chrono::steady_clock::now();
          changed = CircuitState::kOpen;
        }
      }
    }
    notify(changed);
  }

  CircuitState state() const noexcept { return state_.load(std::memory_order_acquire); }
  std::uint64_t rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }
  const PostgresCircuitBreakerOptions& options() const noexcept { return options_; }

 private:
  void notify(std::optional<CircuitState> changed) {
    if (changed && on_change_) on_change_(*changed);
  }

  PostgresCircuitBreakerOptions options_;
  std::function<void(CircuitState)> on_change_;
  std::mutex mutex_;  // serializes transitions; reads of state_ need no lock
  std::atomic<CircuitState> state_{CircuitState::kClosed};
  std::atomic<std::uint32_t> failures_{0};
  std::atomic<std::uint64_t> rejected_{0};
  bool probing_ = false;
  std::chrono::steady_clock::time_point opened_at_{};
};

// The error of a call the open circuit turned away.
inline Error circuit_open_error(const CircuitBreaker& breaker, std::string_view target) {
  return Error(ErrorCode::kUnavailable, "postgresql: circuit breaker open (" + std::string(target) + ") after " +
                                            std::to_string(breaker.options().failure_threshold) +
                                            " consecutive calls without an answer; not calling the server for up to " +
                                            std::to_string(breaker.options().open_duration.count()) +
                                            " ms, then one probe; retry later");
}

}  // namespace idem::pg
