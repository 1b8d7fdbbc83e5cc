// The server clock estimate and the process token sequence; see server_clock.h.
#include "stores/redis/server_clock.h"

#include <algorithm>

namespace idem::redis_detail {
namespace {

std::atomic<std::uint64_t> g_last_token{0};

}  // namespace

std::int64_t ServerClock::micros(Time t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

void ServerClock::observe(std::int64_t server_us, Time sent, Time received) {
  const std::int64_t recv_us = micros(received);
  tried_us_.store(recv_us, std::memory_order_relaxed);
  const std::int64_t u = std::max<std::int64_t>(0, recv_us - micros(sent));
  std::lock_guard lock(mutex_);
  const std::int64_t kept_recv = received_us_.load(std::memory_order_relaxed);
  if (kept_recv >= 0) {
    // The kept sample's uncertainty has grown with its age.
    const std::int64_t aged =
        sample_uncertainty_us_ + 2 * std::max<std::int64_t>(0, recv_us - kept_recv) / kDriftDivisor;
    if (u > aged) return;
  }
  sample_uncertainty_us_ = u;
  // -1: the two integer divisions may round the elapsed time up by one µs.
  offset_.store(server_us - recv_us + recv_us / kDriftDivisor - 1, std::memory_order_relaxed);
  // u + 2 (t - recv) / D <= bound  <=>  t <= recv + (bound - u) * D / 2
  constexpr std::int64_t kBoundUs = std::chrono::microseconds(kMaxClaimUncertainty).count();
  claim_until_us_.store(u > kBoundUs ? -1 : recv_us + (kBoundUs - u) * kDriftDivisor / 2, std::memory_order_relaxed);
  received_us_.store(recv_us, std::memory_order_release);
}

std::optional<std::int64_t> ServerClock::now_us(Time now) const {
  if (received_us_.load(std::memory_order_acquire) < 0) return std::nullopt;
  const std::int64_t t = micros(now);
  return offset_.load(std::memory_order_relaxed) + t - t / kDriftDivisor;
}

std::optional<std::int64_t> ServerClock::claim_us(Time now) const {
  if (received_us_.load(std::memory_order_acquire) < 0) return std::nullopt;
  const std::int64_t t = micros(now);
  if (t > claim_until_us_.load(std::memory_order_relaxed)) return std::nullopt;
  return offset_.load(std::memory_order_relaxed) + t - t / kDriftDivisor;
}

std::optional<std::chrono::microseconds> ServerClock::uncertainty(Time now) const {
  std::lock_guard lock(mutex_);
  const std::int64_t recv = received_us_.load(std::memory_order_relaxed);
  if (recv < 0) return std::nullopt;
  const std::int64_t age = std::max<std::int64_t>(0, micros(now) - recv);
  return std::chrono::microseconds(sample_uncertainty_us_ + 2 * age / kDriftDivisor);
}

bool ServerClock::needs_refresh(Time now) const {
  constexpr std::int64_t kRefreshUs = std::chrono::duration_cast<std::chrono::microseconds>(kRefresh).count();
  const std::int64_t t = micros(now);
  const std::int64_t recv = received_us_.load(std::memory_order_relaxed);
  const std::int64_t tried = tried_us_.load(std::memory_order_relaxed);
  return (recv < 0 || t - recv > kRefreshUs) && (tried < 0 || t - tried > kRefreshUs);
}

bool ServerClock::try_begin_refresh(Time now) {
  if (refreshing_.exchange(true, std::memory_order_acq_rel)) return false;
  tried_us_.store(micros(now), std::memory_order_relaxed);
  return true;
}

Token next_token(std::uint64_t candidate) {
  std::uint64_t last = g_last_token.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t token = std::max(candidate, last + 1);
    if (g_last_token.compare_exchange_weak(last, token, std::memory_order_relaxed)) return token;
  }
}

void observe_token(Token token) {
  std::uint64_t last = g_last_token.load(std::memory_order_relaxed);
  while (last < token && !g_last_token.compare_exchange_weak(last, token, std::memory_order_relaxed)) {
  }
}

}  // namespace idem::redis_detail
