// File: src/stores/redis/server_clock.h
//
// ServerClock estimates a Redis server's clock (TIME) from the local steady
// clock, so that the client can choose a claim's token and lease without a
// script. The estimate is a lower bound:
//
//   TIME answered `server_us` for a request sent at local time `sent` and
//   answered at `received`; the server read its clock somewhere in between.
//   At local time t the estimate is
//     server_us + (t - received) * (1 - kDrift)
//   which is never ahead of the server's clock as long as the two clocks'
//   rates differ by at most kDrift, and is behind it by at most
//     uncertainty(t) = (received - sent) + 2 * kDrift * (t - received).
//
// Of the samples seen, the one with the smallest uncertainty now is kept;
// callers refresh the clock (one TIME) once the kept sample is older than
// kRefresh. docs/design.md explains what this bound means for tokens.
//
// Tokens: next_token() makes the process's tokens strictly increasing, so one
// process never hands out the same token twice, even within a microsecond.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

#include "idem/core/record.h"

namespace idem::redis_detail {

class ServerClock {
 public:
  using Time = std::chrono::steady_clock::time_point;

  // The largest rate difference assumed between the local steady clock and
  // the server's clock: 1000 ppm, twice NTP's maximum slew rate.
  static constexpr std::int64_t kDriftDivisor = 1000;  // 1/kDriftDivisor = 1000 ppm
  static constexpr std::chrono::milliseconds kRefresh{100};
  // A claim takes its token from the estimate only while the estimate is at
  // most this far behind the server's clock; otherwise the claim script
  // reads TIME itself. A sample taken on a loaded machine (a thread not
  // scheduled between send and receive) can be hundreds of ms wide, and
  // would backdate first-seen times and weaken the token bound by as much.
  static constexpr std::chrono::milliseconds kMaxClaimUncertainty{10};

  // observe() offers a TIME sample.
  void observe(std::int64_t server_us, Time sent, Time received);

  // now_us() is the lower-bound estimate of the server's clock at `now`, in
  // microseconds since the Unix epoch; nullopt before the first sample.
  std::optional<std::int64_t> now_us(Time now) const;

  // claim_us() is now_us() while uncertainty() is at most
  // kMaxClaimUncertainty, nullopt otherwise; it takes no lock.
  std::optional<std::int64_t> claim_us(Time now) const;
  // uncertainty() is how far below the server's clock now_us() may be.
  std::optional<std::chrono::microseconds> uncertainty(Time now) const;

  // needs_refresh() is true when the kept sample is older than kRefresh (or
  // there is none), and no refresh was tried within kRefresh (a server that
  // does not answer TIME is not asked again and again).
  bool needs_refresh(Time now) const;

  // try_begin_refresh() is true for the one caller that should send the
  // refreshing TIME; end_refresh() lets the next one.
  bool try_begin_refresh(Time now);
  void end_refresh() { refreshing_.store(false, std::memory_order_release); }

 private:
  static std::int64_t micros(Time t);

  // now_us(t) = offset_ + t_us - t_us / kDriftDivisor (t_us: steady clock
  // in µs); one atomic, so the hot path takes no lock.
  std::atomic<std::int64_t> offset_{0};
  std::atomic<std::int64_t> received_us_{-1};  // -1: no sample yet
  // The local time (µs) up to which the kept sample is tight enough for
  // claim_us(); -1: never.
  std::atomic<std::int64_t> claim_until_us_{-1};
  std::atomic<bool> refreshing_{false};
  std::atomic<std::int64_t> tried_us_{-1};  // the last refresh attempt
  mutable std::mutex mutex_;                // serializes observe()
  std::int64_t sample_uncertainty_us_ = 0;  // received - sent of the kept sample
};

// next_token() returns a token greater than every token this process handed
// out or saw before, and at least `candidate`.
Token next_token(std::uint64_t candidate);

// observe_token() folds a token chosen elsewhere (a script's) into the
// sequence, so the next next_token() is above it.
void observe_token(Token token);

}  // namespace idem::redis_detail
