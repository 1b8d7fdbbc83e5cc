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
#include "stores/redis/json_layout.h"
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

  // prefer_json() sends the JSON record script first (layout=json); either
  // script answers 3 for a record in the other layout, and the other follows.
  void prefer_json() { json_first_ = true; }

  // try_swap() sets up the swap script: `claimed` is the record the claim
  // wrote, `finished` the record to replace it with, expiring at `expire_ms`.
  void try_swap(std::string claimed, std::string finished, long long expire_ms) {
    json_first_ = is_json_record(claimed);
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
    } else if (json_first_) {
      c.script = kJsonOwner;
      c.args = json_args();
    } else {
      c.script = script_;
      c.args = args_;
    }
  }

  // json_args() are the arguments of kJsonOwner for the same operation, made
  // from the packed script's (only when needed: they cost a JSON encoding).
  ArgList json_args() const {
    ArgList a;
    a.add(args_[0]);
    if (script_ == kFinish) {
      a.add(args_[1]);
      a.add(finish_json_fields(args_[1].empty() ? 'C' : args_[1][0], args_[2]));
      a.add(args_[3]);
    } else if (script_ == kExtend) {
      a.add("E");
      a.add(args_[1]);
    } else {
      a.add("K");
      a.add(json_checkpoint(Checkpoint{std::string(args_[1]), std::string(args_[2])}));
    }
    return a;
  }

  std::optional<Result<Unit>> interpret() override {
    Call& c = calls_[0];
    Result<long long> read = read_owner_reply(c.reply.get(), what_, maybe_executed_);
    if (!read && read.error().code() == ErrorCode::kCorrupt) {
      return Result<Unit>(Error(ErrorCode::kCorrupt, "redis: " + std::string(what_) + " of '" + key_ +
                                                         "': the value there is not an Idem record (" +
                                                         read.error().message() + "); left as it is"));
    }
    if (!read) return Result<Unit>(std::move(read).error());
    const long long code = *read;
    if (c.script == kSwap) {
      if (code == 2) {
        // Not the record the claim wrote (extended, checkpointed, waited
        // on, or already finished by an earlier try): the full script.
        swap_.reset();
        c.script = json_first_ ? kJsonOwner : script_;
        c.args = json_first_ ? json_args() : args_;
        c.reply.reset();
        c.wait_reply.reset();
        return std::nullopt;
      }
      if (code != 1) return Result<Unit>(bad_reply(what_));
    }
    if (code == 3 && !switched_) {
      // The record is in the other layout: the other script, once.
      switched_ = true;
      const bool to_json = c.script != kJsonOwner;
      c.script = to_json ? kJsonOwner : script_;
      c.args = to_json ? json_args() : args_;
      c.reply.reset();
      c.wait_reply.reset();
      return std::nullopt;
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
  bool json_first_ = false;
  bool switched_ = false;
};

// finished_record() is the record `claimed` becomes when finished now, with
// its expiry; nullopt without a clock estimate for the key's node.
std::optional<std::pair<std::string, long long>> finished_record(std::string_view key, const std::string& claimed,
                                                                 Node* node, char status, std::string_view value,
                                                                 std::chrono::milliseconds ttl) {
  if (node == nullptr) return std::nullopt;
  const auto now_us = node->clock().now_us(Clock::now());
  if (!now_us) return std::nullopt;
  const Timestamp now(std::chrono::milliseconds(*now_us / 1000));
  if (is_json_record(claimed)) return finish_json_record(key, claimed, status, value, now, ttl);
  return finish_record(claimed, status, value, now, ttl);
}

// new_owner_op() is an OwnerOp that tries the JSON script first in
// layout=json.
OwnerOp* new_owner_op(const OpContext& ctx, std::string_view key, ScriptId script, const char* what, bool wait,
                      StatusCallback done, bool sync) {
  auto* op = new OwnerOp(ctx, key, script, what, wait, std::move(done), sync);
  if (ctx.core.options().layout == RedisLayout::kJson) op->prefer_json();
  return op;
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
      new_owner_op(context(), req.key, kFinish, "complete", core_.options().wait_replicas > 0, std::move(done), sync);
  op->args().add_unsigned(req.token);
  op->args().add("C");
  op->args().add(req.result);
  op->args().add_number(req.ttl.count());
  if (std::optional<std::string> claimed = claims_.take(req.key, req.token)) {
    if (auto finished = finished_record(req.key, *claimed, topology_->route(req.key), 'C', req.result, req.ttl)) {
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
  auto* op =
      new_owner_op(context(), req.key, kFinish, "fail", core_.options().wait_replicas > 0, std::move(done), sync);
  const char status = req.retryable ? 'F' : 'X';
  op->args().add_unsigned(req.token);
  op->args().add(std::string_view(&status, 1));
  op->args().add(req.error);
  op->args().add_number(req.ttl.count());
  if (std::optional<std::string> claimed = claims_.take(req.key, req.token)) {
    if (auto finished = finished_record(req.key, *claimed, topology_->route(req.key), status, req.error, req.ttl)) {
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
  auto* op = new_owner_op(context(), key, kExtend, "extend", false, std::move(done), sync);
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
  auto* op = new_owner_op(context(), key, kCheckpoint, "checkpoint", false, std::move(done), sync);
  op->args().add_unsigned(token);
  op->args().add(cp.name);
  op->args().add(cp.data);
  op->start();
}

}  // namespace idem::redis_detail
