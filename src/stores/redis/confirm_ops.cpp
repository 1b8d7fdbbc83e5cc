// Confirmed reads under wait_replicas.
//
// WAIT covers what a store wrote, but a claim or a get may read a record it
// did not write: a completion (or a terminal failure) that another process
// wrote on the master and whose WAIT fell short. While a failover is under
// way the old master still answers (a manual SENTINEL FAILOVER, a partition):
// a duplicate would be told "completed, here is the result", the promoted
// replica never had that completion, and the key then runs again and stores
// another result. So, with wait_replicas, a claim or get that reads a final
// record (completed, failed for good) reports it only once the replicas have
// it: a script rewrites the record with the same bytes and TTL (a write, so
// it enters the replication stream after the completion it shows) and WAIT
// confirms the stream up to there. A shortfall is kUnavailable, as for a
// write: the caller retries later, when the topology has settled. Records in
// progress are not confirmed: nobody acts on them but to retry.
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "stores/redis/record_codec.h"
#include "stores/redis/redis_store.h"
#include "stores/redis/replies.h"

namespace idem::redis_detail {
namespace {

// GET, then SET the same bytes with the same TTL; the reply is the record.
constexpr std::string_view kTouchScript =
    "local v = redis.call('GET', KEYS[1]) if v then redis.call('SET', KEYS[1], v, 'KEEPTTL') end return v";

bool is_final(const IdempotencyRecord& r) {
  return r.status == ProcessingStatus::kCompleted || (r.status == ProcessingStatus::kFailed && !r.retryable);
}

class ConfirmOp final : public Operation<Unit, StatusCallback> {
 public:
  ConfirmOp(const OpContext& ctx, std::string key, const IdempotencyRecord& seen, const char* what, StatusCallback done)
      : Operation(ctx, std::move(done), /*idempotent=*/true, /*sync=*/false),
        key_(std::move(key)),
        token_(seen.token),
        status_(seen.status),
        what_(what) {}

 private:
  void prepare() override {
    calls_.resize(1);
    Call& c = calls_[0];
    c.fresh();
    c.script.reset();
    c.key = key_;
    c.wait = true;
    c.args.clear();
    c.args.add("EVAL");
    c.args.add(kTouchScript);
    c.args.add("1");
    c.args.add(key_);
  }

  std::optional<Result<Unit>> interpret() override {
    const Call& c = calls_[0];
    if (Status st = reply_status(c.reply.get(), maybe_executed_); !st) return Result<Unit>(std::move(st).error());
    redis_answered_ = true;
    const bool same = [&] {
      if (c.reply->type != REDIS_REPLY_STRING) return false;
      Result<DecodedRecord> now = decode_record(key_, reply_text(c.reply.get()), std::nullopt);
      return now.ok() && now->record.token == token_ && now->record.status == status_;
    }();
    if (!same) {
      return Result<Unit>(Error(ErrorCode::kUnavailable, "redis: the record of '" + key_ + "' changed while the " +
                                                             what_ + " confirmed it on the replicas; retry"));
    }
    Result<long long> acked = replicas_acked(c);
    if (!acked) return Result<Unit>(std::move(acked).error());
    const auto want = core_.options().wait_replicas;
    if (*acked >= static_cast<long long>(want)) return Result<Unit>(Unit{});
    return Result<Unit>(map_error(
        Failure::kNotConfirmed,
        "the " + std::string(what_) + " found '" + key_ + "' settled on the master, but " + std::to_string(*acked) +
            " of " + std::to_string(want) +
            " replicas confirmed it within the WAIT timeout: a failover now could lose that outcome; retry later"));
  }

  std::string key_;
  Token token_;
  ProcessingStatus status_;
  const char* what_;
};

}  // namespace

void RedisStoreImpl::start_confirm(std::string key, const IdempotencyRecord& seen, const char* what,
                                   StatusCallback done) {
  if (closing_.load()) {
    deliver(done, Status(Error(ErrorCode::kUnavailable, "redis: the store is closed")));
    return;
  }
  (new ConfirmOp(context(), std::move(key), seen, what, std::move(done)))->start();
}

ResultCallback<ClaimOutcome> RedisStoreImpl::confirming(const ClaimRequest& request,
                                                        ResultCallback<ClaimOutcome> done) {
  if (core_.options().wait_replicas == 0) return done;
  return [this, key = std::string(request.key), done = std::move(done)](Result<ClaimOutcome> out) mutable {
    if (!out || out->acquired() || !out->record || !is_final(*out->record)) {
      deliver(done, std::move(out));
      return;
    }
    const IdempotencyRecord seen = *out->record;
    start_confirm(std::move(key), seen, "claim", [out = std::move(out), done = std::move(done)](Status st) mutable {
      if (!st) {
        deliver(done, Result<ClaimOutcome>(std::move(st).error()));
      } else {
        deliver(done, std::move(out));
      }
    });
  };
}

namespace {

// ManyConfirm joins the confirmations of one claim_many.
struct ManyConfirm {
  std::mutex mutex;
  Result<std::vector<ClaimOutcome>> outcomes;
  std::optional<Error> error;
  std::size_t left = 0;
  ResultCallback<std::vector<ClaimOutcome>> done;

  explicit ManyConfirm(Result<std::vector<ClaimOutcome>> o) : outcomes(std::move(o)) {}

  void one_done(Status st) {
    {
      std::lock_guard lock(mutex);
      if (!st && !error) error = std::move(st).error();
      if (--left > 0) return;
    }
    if (error) {
      deliver(done, Result<std::vector<ClaimOutcome>>(std::move(*error)));
    } else {
      deliver(done, std::move(outcomes));
    }
  }
};

}  // namespace

ResultCallback<std::vector<ClaimOutcome>> RedisStoreImpl::confirming(std::span<const ClaimRequest> requests,
                                                                     ResultCallback<std::vector<ClaimOutcome>> done) {
  if (core_.options().wait_replicas == 0) return done;
  std::vector<std::string> keys;
  keys.reserve(requests.size());
  for (const ClaimRequest& r : requests) keys.emplace_back(r.key);
  return [this, keys = std::move(keys), done = std::move(done)](Result<std::vector<ClaimOutcome>> out) mutable {
    std::vector<std::size_t> to_confirm;
    if (out) {
      for (std::size_t i = 0; i < out->size() && i < keys.size(); ++i) {
        const ClaimOutcome& o = (*out)[i];
        if (!o.acquired() && o.record && is_final(*o.record)) to_confirm.push_back(i);
      }
    }
    if (to_confirm.empty()) {
      deliver(done, std::move(out));
      return;
    }
    auto join = std::make_shared<ManyConfirm>(std::move(out));
    join->left = to_confirm.size();
    join->done = std::move(done);
    for (std::size_t i : to_confirm) {
      const IdempotencyRecord seen = *(*join->outcomes)[i].record;
      start_confirm(keys[i], seen, "claim", [join](Status st) { join->one_done(std::move(st)); });
    }
  };
}

ResultCallback<std::optional<IdempotencyRecord>> RedisStoreImpl::confirming(
    std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) {
  if (core_.options().wait_replicas == 0) return done;
  return [this, key = std::string(key), done = std::move(done)](Result<std::optional<IdempotencyRecord>> out) mutable {
    if (!out || !out->has_value() || !is_final(**out)) {
      deliver(done, std::move(out));
      return;
    }
    const IdempotencyRecord seen = **out;
    start_confirm(std::move(key), seen, "read", [out = std::move(out), done = std::move(done)](Status st) mutable {
      if (!st) {
        deliver(done, Result<std::optional<IdempotencyRecord>>(std::move(st).error()));
      } else {
        deliver(done, std::move(out));
      }
    });
  };
}

}  // namespace idem::redis_detail
