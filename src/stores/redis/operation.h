// File: src/stores/redis/operation.h
//
// Operation<T> is one store operation in flight: it builds its calls
// (prepare), sends them (CallRunner), reads the replies (interpret), possibly
// sends a follow-up round, and retries the whole attempt after a retryable
// failure when that is safe: with backoff and jitter, on the loop's timers,
// and only when the operation is idempotent or certainly did not run. It then
// delivers the result to the caller's callback and deletes itself.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <type_traits>
#include <utility>

#include "idem/core/store.h"
#include "stores/redis/call_runner.h"

namespace idem::redis_detail {

struct Unit {};

// reply_status() turns an error reply into an Error; retryable ones ("not
// executed, try again": -LOADING...) also mark the attempt as not executed.
Status reply_status(const redisReply* reply, bool& maybe_executed);

// check_key() refuses an empty key (kInvalidArgument), before anything is sent.
Status check_key(std::string_view key);

// bad_reply() is the error for a well-formed reply of the wrong shape.
Error bad_reply(std::string_view what);

// replicas_acked() is the count a call's WAIT reply gives, or the error it
// is (an error reply, a missing or malformed one).
Result<long long> replicas_acked(const Call& c);

// backoff() is the delay before retry number `retry` (1-based).
std::chrono::milliseconds backoff(const RedisRetryOptions& options, std::uint32_t retry);

// deliver() calls a store callback, dropping what it throws (store.h).
template <typename Callback, typename Value>
void deliver(Callback& done, Value&& value) noexcept {
  try {
    done(std::forward<Value>(value));
  } catch (...) {  // NOLINT(bugprone-empty-catch): the contract drops it
  }
}

class ClaimCache;

// OpContext is what an operation needs from its store.
struct OpContext {
  StoreCore& core;
  Topology& topology;
  const std::atomic<bool>& closing;
  ClaimCache& claims;
};

template <typename T, typename Callback>
class Operation : public CallRunner {
 public:
  // start() runs the first attempt on the calling thread.
  void start() { attempt(); }

 protected:
  Operation(const OpContext& ctx, Callback done, bool idempotent, bool sync)
      : CallRunner(ctx.core, ctx.topology, sync),
        closing_(ctx.closing),
        done_(std::move(done)),
        idempotent_(idempotent) {}

  // prepare() fills calls_ for an attempt (the first or a retry; calls of a
  // previous attempt are still there: reuse them, fresh()).
  virtual void prepare() = 0;
  // interpret() reads the replies: a result, or nullopt after setting up
  // calls_ for another round.
  virtual std::optional<Result<T>> interpret() = 0;

  std::uint32_t attempt_number() const { return attempt_; }

 private:
  void attempt() {
    maybe_executed_ = false;
    redis_answered_ = false;
    prepare();
    run_calls();
  }

  void on_calls_done(Status status) override {
    if (!status) {
      fail(std::move(status).error());
      return;
    }
    std::optional<Result<T>> r = interpret();
    if (!r) {
      run_calls();
      return;
    }
    if (!r->ok() && r->error().retryable() && !redis_answered_) {
      fail(std::move(*r).error());
      return;
    }
    finish(std::move(*r));
  }

  void fail(Error error) {
    const bool infra = error.retryable() && !redis_answered_;
    const RedisRetryOptions& retry = core_.options().retry;
    if (!infra || attempt_ >= retry.max_attempts || (!idempotent_ && maybe_executed_) || closing_.load()) {
      finish(std::move(error));
      return;
    }
    core_.counters().retries.fetch_add(1, std::memory_order_relaxed);
    const auto delay = backoff(retry, attempt_);
    ++attempt_;
    core_.loop().post_at(Clock::now() + delay, [this] { attempt(); });
  }

  void finish(Result<T> result) {
    if constexpr (std::is_same_v<Callback, StatusCallback>) {
      deliver(done_, result.ok() ? Status() : Status(std::move(result).error()));
    } else {
      deliver(done_, std::move(result));
    }
    delete this;
  }

  const std::atomic<bool>& closing_;
  Callback done_;
  const bool idempotent_;
  std::uint32_t attempt_ = 1;
};

}  // namespace idem::redis_detail
