// File: src/stores/postgres/circuit_breaker.h
//
// The PostgreSQL store's circuit breaker is the shared one
// (core/circuit_breaker.h): without it a down server costs every call a
// connection attempt of up to connect_timeout.
#pragma once

#include <string>
#include <string_view>

#include "core/circuit_breaker.h"
#include "idem/core/error.h"
#include "idem/stores/postgres.h"

namespace idem::pg {

using CircuitBreaker = idem::detail::CircuitBreaker;

inline idem::detail::CircuitBreakerSettings breaker_settings(const PostgresCircuitBreakerOptions& o) {
  return {o.enabled, o.failure_threshold, o.open_duration};
}

// The error of a call the open circuit turned away.
inline Error circuit_open_error(const CircuitBreaker& breaker, std::string_view target) {
  return Error(ErrorCode::kUnavailable, "postgresql: circuit breaker open (" + std::string(target) + ") after " +
                                            std::to_string(breaker.settings().failure_threshold) +
                                            " consecutive calls without an answer; not calling the server for up to " +
                                            std::to_string(breaker.settings().open_duration.count()) +
                                            " ms, then one probe; retry later");
}

}  // namespace idem::pg
