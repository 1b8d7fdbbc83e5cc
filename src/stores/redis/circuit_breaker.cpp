// The per-node circuit breaker; see circuit_breaker.h.
#include "stores/redis/circuit_breaker.h"

namespace idem::redis_detail {

bool CircuitBreaker::allow() {
  if (!options_.enabled) return true;
  // Lock-free while closed: the breaker must not become the one mutex every
  // call of every thread goes through.
  if (state_.load(std::memory_order_acquire) == CircuitState::kClosed) return true;
  bool changed = false;
  bool ok = true;
  {
    std::lock_guard lock(mutex_);
    const CircuitState state = state_.load(std::memory_order_relaxed);
    if (state == CircuitState::kOpen) {
      if (std::chrono::steady_clock::now() - opened_at_ >= options_.open_duration) {
        state_.store(CircuitState::kHalfOpen, std::memory_order_release);
        probing_ = true;  // this caller is the probe
        changed = true;
      } else {
        ok = false;
      }
    } else if (state == CircuitState::kHalfOpen) {
      ok = !probing_;
      probing_ = true;
    }
  }
  notify(changed);
  return ok;
}

void CircuitBreaker::release() {
  if (!options_.enabled || state_.load(std::memory_order_acquire) != CircuitState::kHalfOpen) return;
  std::lock_guard lock(mutex_);
  probing_ = false;
}

void CircuitBreaker::record(bool success) {
  if (!options_.enabled) return;
  if (success && state_.load(std::memory_order_acquire) == CircuitState::kClosed &&
      failures_.load(std::memory_order_relaxed) == 0) {
    return;
  }
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    const CircuitState state = state_.load(std::memory_order_relaxed);
    if (success) {
      failures_.store(0, std::memory_order_relaxed);
      if (state != CircuitState::kClosed) {
        state_.store(CircuitState::kClosed, std::memory_order_release);
        probing_ = false;
        changed = true;
      }
    } else {
      const std::uint32_t failures = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
      if (state == CircuitState::kHalfOpen ||
          (state == CircuitState::kClosed && failures >= options_.failure_threshold)) {
        state_.store(CircuitState::kOpen, std::memory_order_release);
        probing_ = false;
        opened_at_ = std::chrono::steady_clock::now();
        changed = true;
      }
    }
  }
  notify(changed);
}

}  // namespace idem::redis_detail
