// The network stores' circuit breaker; see circuit_breaker.h.
#include "core/circuit_breaker.h"

#include <optional>

namespace idem::detail {

bool CircuitBreaker::allow() {
  if (!settings_.enabled) return true;
  // Lock-free while closed: the breaker must not become the one mutex every
  // call of every thread goes through.
  if (state_.load(std::memory_order_acquire) == CircuitState::kClosed) return true;
  std::optional<CircuitState> changed;
  bool ok = true;
  {
    std::lock_guard lock(mutex_);
    const CircuitState state = state_.load(std::memory_order_relaxed);
    if (state == CircuitState::kOpen) {
      if (std::chrono::steady_clock::now() - opened_at_ >= settings_.open_duration) {
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
  if (changed && on_change_) on_change_(*changed);
  return ok;
}

void CircuitBreaker::release() {
  if (!settings_.enabled || state_.load(std::memory_order_acquire) != CircuitState::kHalfOpen) return;
  std::lock_guard lock(mutex_);
  probing_ = false;
}

void CircuitBreaker::record(bool answered) {
  if (!settings_.enabled) return;
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
          (state == CircuitState::kClosed && failures >= settings_.failure_threshold)) {
        state_.store(CircuitState::kOpen, std::memory_order_release);
        probing_ = false;
        opened_at_ = std::chrono::steady_clock::now();
        changed = CircuitState::kOpen;
      }
    }
  }
  if (changed && on_change_) on_change_(*changed);
}

}  // namespace idem::detail
