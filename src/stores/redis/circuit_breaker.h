// File: src/stores/redis/circuit_breaker.h
//
// Each Redis node has its own circuit breaker (the shared one in
// core/circuit_breaker.h), so one dead Cluster master does not fail the keys
// of the healthy ones.
#pragma once

#include "core/circuit_breaker.h"
#include "idem/stores/redis.h"

namespace idem::redis_detail {

using CircuitBreaker = idem::detail::CircuitBreaker;

inline idem::detail::CircuitBreakerSettings breaker_settings(const RedisCircuitBreakerOptions& o) {
  return {o.enabled, o.failure_threshold, o.open_duration};
}

}  // namespace idem::redis_detail
