// The owner's operations: complete, fail, extend, checkpoint. Each is one
// script fenced by the token (scripts.h), safe to retry even when the first
// try may have run: a repeated complete/fail is recognised by the script (-2:
// the same token already made the record reach that state), and extend and
// checkpoint write the same values again.
//
// complete and fail of a key this store claimed with a plain SET first try
// the swap script: the finished record is built here, from the exact record
// the claim wrote (claim_cache.h), and replaces it only if the key still
// holds those bytes; otherwise the full finish script runs, in a second round.
#include <algorithm>
#include <string>

#include "stores/redis/claim_cache.h"
#include "stores/redis/record_codec.h"
#include "stores/redis/redis_store.h"
#include "stores/redis/replies.h"

namespace idem::redis_detail {
namespace {

class OwnerOp final : public Operation<Unit, StatusCallback> {
 public:
  OwnerOp(const OpContext& ctx, std::string_view key, ScriptId script, const char* what, bool wait, StatusCallback done,
          bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/true, sync),
        key_(key),
        script_(script),
        what_(what),
        wait_(wait) {}

  ArgList& args() { return args_; }

  // try_swap() sets up the swap script: `claimed` is the record the claim
  // wrote, `finished` the record to replace it with, expiring at `expire_ms`.
  void try_swap(std::string claimed, std::string finished, long long expire_ms) {
    swap_.emplace();
    swap_->add(claimed);
    swap_->add(finished);
    swap_->add_number(expire_ms);
  }

 private:
  void prepare() override {
    calls_.resize(1);
    Call& c = calls_[0];
    c.fresh();
    c.key = key_;
    c.wait = wait_;
    if (swap_) {
      c.script = kSwap;
      c.args = *swap_;
    } else {
      c.script = script_;
      c.args = args_;
    }
  }

  std::optional<Result<Unit>> interpret() override {
    Call& c = calls_[0];
    Result<long long> read = read_owner_reply(c.reply.get(), what_, maybe_executed_);
    if (!read) return Result<Unit>(std::move(read).error());
    const long long code = *read;
    if (c.script == kSwap) {
      if (code == 2) {
        // Not the record the claim wrote (extended, checkpointed, waited
        // on, or already finished by an earlier try): the full script.
        swap_.reset();
        c.script = script_;
        c.args = args_;
        c.reply.reset();
        c.wait_reply.reset();
        return std::nullopt;
      }
      if (code != 1) return Result<Unit>(bad_reply(what_));
    }
    auto lost = [&](const char* why) {
      return Result<Unit>(Error(ErrorCode::kLeaseLost, "redis: " + std::string(what_) + " of '" + key_ +
                                                           "': lease lost: " + why +
                                                           "; another worker owns the key now, do not retry"));
    };
    switch (code) {
      case 1: break;
      case 0: return lost("the record no longer exists");
      case -1: return lost("the fencing token is stale");
      case -2:
        // Our own earlier try got through but its reply was lost.
        if (attempt_number() > 1) break;
        return lost("the record is no longer PROCESSING");
      case -3: return lost("the record is no longer PROCESSING");
      default: return Result<Unit>(bad_reply(what_));
    }
    if (wait_) {
      Result<long long> acked = replicas_acked(c);
      if (!acked) return Result<Unit>(std::move(acked).error());
      const auto want = core_.options().wait_replicas;
      if (*acked < static_cast<long long>(want)) {
        redis_answered_ = true;
        return Result<Unit>(map_error(
            Failure::kNotConfirmed,
            std::string(what_) + " of '" + key_ + "' is on the master but reached " + std::to_string(*acked) + " of " +
                std::to_string(want) +
                " replicas within the WAIT timeout: a failover now could lose it (the key would run again after "
                "its lease)"));
      }
    }
    return Result<Unit>(Unit{});
  }

  std::string key_;
  ScriptId script_;
  const char* what_;
  bool wait_;
  ArgList args_;
  std::optional<ArgList> swap_;
};

// finished_record() is the record `claimed` becomes when finished now, with
// its expiry; nullopt without a clock estimate for the key's node.
std::optional<std::pair<std::string, long long>> finished_record(const std::string& claimed, Node* node, char status,
                                                                 std::string_view value,
                                                                 std::chrono::milliseconds ttl) {
  if (node == nullptr) return std::nullopt;
  const auto now_us = node->clock().now_us(Clock::now());
  if (!now_us) return std::nullopt;
  return finish_record(claimed, status, value, Timestamp(std::chrono::milliseconds(*now_us / 1000)), ttl);
}

}  // namespace

void RedisStoreImpl::start_complete(const CompleteRequest& req, StatusCallback done, bool sync) {
  Status st = validate_complete_request(req);
  if (st) st = check_key(req.key);
  if (!st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op =
      new OwnerOp(context(), req.key, kFinish, "complete", core_.options().wait_replicas > 0, std::move(done), sync);
  op->args().add_unsigned(req.token);
  op->args().add("C");
  op->args().add(req.result);
  op->args().add_number(req.ttl.count());
  if (std::optional<std::string> claimed = claims_.take(req.key, req.token)) {
    if (auto finished = finished_record(*claimed, topology_->route(req.key), 'C', req.result, req.ttl)) {
      op->try_swap(std::move(*claimed), std::move(finished->first), finished->second);
    }
  }
  op->start();
}

void RedisStoreImpl::start_fail(const FailRequest& req, StatusCallback done, bool sync) {
  Status st = validate_fail_request(req);
  if (st) st = check_key(req.key);
  if (!st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op = new OwnerOp(context(), req.key, kFinish, "fail", core_.options().wait_replicas > 0, std::move(done), sync);
  const char status = req.retryable ? 'F' : 'X';
  op->args().add_unsigned(req.token);
  op->args().add(std::string_view(&status, 1));
  op->args().add(req.error);
  op->args().add_number(req.ttl.count());
  if (std::optional<std::string> claimed = claims_.take(req.key, req.token)) {
    if (auto finished = finished_record(*claimed, topology_->route(req.key), status, req.error, req.ttl)) {
      op->try_swap(std::move(*claimed), std::move(finished->first), finished->second);
    }
  }
  op->start();
}

void RedisStoreImpl::start_extend(std::string_view key, Token token, std::chrono::milliseconds lease,
                                  StatusCallback done, bool sync) {
  Status st = validate_lease(lease);
  if (st) st = check_key(key);
  if (!st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op = new OwnerOp(context(), key, kExtend, "extend", false, std::move(done), sync);
  op->args().add_unsigned(token);
  op->args().add_number(lease.count());
  op->start();
}

void RedisStoreImpl::start_checkpoint(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done,
                                      bool sync) {
  if (Status st = check_key(key); !st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op = new OwnerOp(context(), key, kCheckpoint, "checkpoint", false, std::move(done), sync);
  op->args().add_unsigned(token);
  op->args().add(cp.name);
  op->args().add(cp.data);
  op->start();
}

}  // namespace idem::redis_detail
