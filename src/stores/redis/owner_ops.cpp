// The owner's operations: complete, fail, extend, checkpoint. Each is one
// script fenced by the token (scripts.h), safe to retry even when the first
// try may have run: a repeated complete/fail is recognised by the script (-2:
// the same token already made the record reach that state), and extend and
// checkpoint write the same values again.
#include <string>

#include "stores/redis/redis_store.h"

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

 private:
  void prepare() override {
    if (calls_.empty()) {
      calls_.resize(1);
      Call& c = calls_[0];
      c.script = script_;
      c.key = key_;
      c.args = std::move(args_);
      c.wait = wait_;
    }
    calls_[0].fresh();
  }

  std::optional<Result<Unit>> interpret() override {
    const Call& c = calls_[0];
    const redisReply* rep = c.reply.get();
    if (Status st = reply_status(rep, maybe_executed_); !st) return Result<Unit>(std::move(st).error());
    long long code = 0;
    if (!reply_int(rep, code)) return Result<Unit>(bad_reply(what_));
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
      long long acked = 0;
      if (!c.wait_reply || !reply_int(c.wait_reply.get(), acked)) {
        if (c.wait_reply && c.wait_reply->type == REDIS_REPLY_ERROR) {
          return Result<Unit>(map_error(Failure::kServerReply, reply_text(c.wait_reply.get())));
        }
        return Result<Unit>(bad_reply("WAIT"));
      }
      const auto want = core_.options().wait_replicas;
      if (acked < static_cast<long long>(want)) {
        redis_answered_ = true;
        return Result<Unit>(map_error(
            Failure::kNotConfirmed,
            std::string(what_) + " of '" + key_ + "' is on the master but reached " + std::to_string(acked) + " of " +
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
};

Status check_key(std::string_view key) {
  if (key.empty()) return Error(ErrorCode::kInvalidArgument, "redis: empty key");
  return {};
}

}  // namespace

void RedisStoreImpl::start_complete(const CompleteRequest& req, StatusCallback done, bool sync) {
  if (Status st = check_key(req.key); !st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op =
      new OwnerOp(context(), req.key, kFinish, "complete", core_.options().wait_replicas > 0, std::move(done), sync);
  op->args().add_unsigned(req.token);
  op->args().add("C");
  op->args().add(req.result);
  op->args().add_number(req.ttl.count());
  op->start();
}

void RedisStoreImpl::start_fail(const FailRequest& req, StatusCallback done, bool sync) {
  if (Status st = check_key(req.key); !st) {
    deliver(done, std::move(st));
    return;
  }
  auto* op = new OwnerOp(context(), req.key, kFinish, "fail", core_.options().wait_replicas > 0, std::move(done), sync);
  op->args().add_unsigned(req.token);
  op->args().add(req.retryable ? "F" : "X");
  op->args().add(req.error);
  op->args().add_number(req.ttl.count());
  op->start();
}

void RedisStoreImpl::start_extend(std::string_view key, Token token, std::chrono::milliseconds lease,
                                  StatusCallback done, bool sync) {
  if (Status st = check_key(key); !st) {
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
