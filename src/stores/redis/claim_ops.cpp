// Claims. A claim on an absent key is one plain command chosen by the client:
//
//   SET key <PROCESSING record> NX GET PXAT <expiry>
//
// with the token and the lease taken from the node's clock estimate
// (server_clock.h). When the key exists, the same command wrote nothing and
// returned the record: a duplicate (completed, failed for good, in progress,
// or another payload) is decided from it on the client, and only a takeover
// (expired lease) or a retry (retryable failure) goes on to the claim script,
// which decides again, atomically, with the server's own clock. Without a
// clock estimate yet (the first claim before any connection), the claim
// script does everything.
#include <string>
#include <vector>

#include "stores/redis/claim_cache.h"
#include "stores/redis/record_codec.h"
#include "stores/redis/redis_store.h"
#include "stores/redis/replies.h"

namespace idem::redis_detail {
namespace {

using std::chrono::milliseconds;

// OwnedClaim keeps a request's bytes (the caller's are only valid until the
// *_async call returns).
struct OwnedClaim {
  std::string key;
  std::string event_id;
  std::string event_type;
  std::string fingerprint;
  milliseconds lease{};
  milliseconds ttl{};

  explicit OwnedClaim(const ClaimRequest& r)
      : key(r.key),
        event_id(r.event_id),
        event_type(r.event_type),
        fingerprint(r.fingerprint),
        lease(r.lease),
        ttl(r.ttl) {}
  ClaimRequest view() const { return ClaimRequest{key, event_id, event_type, fingerprint, lease, ttl}; }
};

long long server_now_ms(Node* node) {
  if (node == nullptr) return -1;
  const auto us = node->clock().now_us(Clock::now());
  return us ? *us / 1000 : -1;
}

// How far the server's clock may be above server_now_ms(), rounded up.
long long server_clock_slack_ms(Node* node) {
  if (node == nullptr) return 0;
  const auto u = node->clock().uncertainty(Clock::now());
  return u ? (u->count() + 999) / 1000 + 1 : 0;
}

void fill_script_claim(Call& c, const OwnedClaim& r) {
  c.script = kClaim;
  c.args.clear();
  c.args.add(r.event_id);
  c.args.add(event_id_in_key(r.key, r.event_id) ? "E" : "e");
  c.args.add(r.event_type);
  c.args.add(r.fingerprint);
  c.args.add_number(r.lease.count());
  c.args.add_number(r.ttl.count());
}

// fill_claim() prepares the plain claim when the node's clock is known, the
// script otherwise. Returns the token chosen (0: the script chooses), and the
// record written in `record`.
Token fill_claim(Call& c, const OwnedClaim& r, Topology& topology, bool wait, std::string& record) {
  c.fresh();
  c.key = r.key;
  c.wait = wait;
  Node* node = topology.route(r.key);
  std::optional<std::int64_t> now_us;
  if (node != nullptr) {
    now_us = node->clock().claim_us(Clock::now());  // nullopt: too uncertain, the script reads TIME
    node->refresh_clock();
  }
  if (!now_us || *now_us <= 0) {
    fill_script_claim(c, r);
    return 0;
  }
  const Token token = next_token(static_cast<std::uint64_t>(*now_us));
  NewClaim claim = new_claim_record(r.view(), token);
  c.script.reset();
  c.args.clear();
  c.args.add("SET");
  c.args.add(r.key);
  c.args.add(claim.value);
  c.args.add("NX");
  c.args.add("GET");
  c.args.add("PXAT");
  c.args.add_number(claim.expire_at_ms);
  record = std::move(claim.value);
  return token;
}

// What a claim's reply says.
struct ClaimReading {
  std::optional<Result<ClaimOutcome>> outcome;  // empty: the claim script must decide
};

Status check_wait(const Call& c, const RedisStoreOptions& o, std::string_view key, std::string_view what,
                  bool& redis_answered) {
  if (o.wait_replicas == 0) return {};
  Result<long long> acked = replicas_acked(c);
  if (!acked) return std::move(acked).error();
  if (*acked >= static_cast<long long>(o.wait_replicas)) return {};
  redis_answered = true;
  return map_error(Failure::kNotConfirmed, std::string(what) + " of '" + std::string(key) + "' reached " +
                                               std::to_string(*acked) + " of " + std::to_string(o.wait_replicas) +
                                               " replicas within the WAIT timeout");
}

Error not_confirmed_claim(Error e) {
  return Error(e.code(), e.message() + "; not running the handler (the key stays PROCESSING until its lease expires)");
}

ClaimReading read_plain_claim(const Call& c, const OwnedClaim& r, Token token, const RedisStoreOptions& o,
                              bool& maybe_executed, bool& redis_answered) {
  const redisReply* reply = c.reply.get();
  if (reply->type == REDIS_REPLY_NIL) {
    if (Status st = check_wait(c, o, r.key, "claim", redis_answered); !st) {
      return {Result<ClaimOutcome>(not_confirmed_claim(std::move(st).error()))};
    }
    const NewClaim record = new_claim_record(r.view(), token);
    ClaimOutcome out;
    out.status = ClaimStatus::kAcquired;
    out.acquire_kind = AcquireKind::kNew;
    out.token = token;
    out.attempt = 1;
    out.lease_expires_at = record.lease_expires_at;
    return {Result<ClaimOutcome>(std::move(out))};
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    return {Result<ClaimOutcome>(reply_status(reply, maybe_executed).error())};
  }
  if (reply->type != REDIS_REPLY_STRING) return {Result<ClaimOutcome>(bad_reply("claim: SET NX GET"))};
  // The key existed: SET NX wrote nothing.
  maybe_executed = false;
  Result<DecodedRecord> decoded = decode_record(r.key, reply_text(reply), std::nullopt);
  if (!decoded) return {Result<ClaimOutcome>(std::move(decoded).error())};
  if (!decoded->expiry_known) return {};  // format 1: the script reads its expiry
  IdempotencyRecord& rec = decoded->record;
  ClaimOutcome out;
  const long long now_ms = server_now_ms(c.node);
  if (!r.fingerprint.empty() && !rec.fingerprint.empty() && rec.fingerprint != r.fingerprint) {
    out.status = ClaimStatus::kMismatch;
  } else if (rec.status == ProcessingStatus::kCompleted) {
    out.status = ClaimStatus::kCompleted;
  } else if (rec.status == ProcessingStatus::kFailed && !rec.retryable) {
    out.status = ClaimStatus::kFailed;
  } else if (rec.status == ProcessingStatus::kProcessing && now_ms >= 0 &&
             rec.lease_expires_at.time_since_epoch().count() > now_ms + server_clock_slack_ms(c.node)) {
    // Live even by the highest reading of the server's clock. A lease that
    // may have ended within the estimate's uncertainty goes to the script,
    // which decides with the server's own clock: a claim made right after
    // wait_settled() saw the lease end must take the key over, not report
    // it in progress.
    out.status = ClaimStatus::kInProgress;
  } else {
    return {};  // a takeover or a retry: the script decides with the server's clock
  }
  out.record = std::move(rec);
  return {Result<ClaimOutcome>(std::move(out))};
}

Result<ClaimOutcome> read_script_claim(const Call& c, const OwnedClaim& r, const RedisStoreOptions& o,
                                       bool& maybe_executed, bool& redis_answered) {
  Result<ClaimOutcome> out = read_claim_script_reply(r.key, c.reply.get(), maybe_executed);
  if (!out || !out->acquired()) return out;
  // Later client-chosen tokens of this process must be above it.
  observe_token(out->token);
  if (Status st = check_wait(c, o, r.key, "claim", redis_answered); !st) {
    return not_confirmed_claim(std::move(st).error());
  }
  return out;
}

// One claim step of one request: read the reply of `c`; when the script must
// decide, turn `c` into the script call and say so.
std::optional<Result<ClaimOutcome>> step_claim(Call& c, const OwnedClaim& r, Token token, const RedisStoreOptions& o,
                                               bool& maybe_executed, bool& redis_answered) {
  if (c.script) return read_script_claim(c, r, o, maybe_executed, redis_answered);
  ClaimReading reading = read_plain_claim(c, r, token, o, maybe_executed, redis_answered);
  if (reading.outcome) return std::move(*reading.outcome);
  fill_script_claim(c, r);
  c.reply.reset();
  c.wait_reply.reset();
  return std::nullopt;
}

// remember() keeps the record of a plain-SET claim that acquired, for the
// swap script of its complete or fail (claim_cache.h).
void remember(ClaimCache& cache, const Call& c, const OwnedClaim& r, Token token,
              const std::optional<Result<ClaimOutcome>>& step, std::string& record) {
  if (token == 0 || record.empty() || c.script || !step || !step->ok() || !(*step)->acquired()) return;
  cache.put(r.key, token, std::move(record));
}

class ClaimOp final : public Operation<ClaimOutcome, ResultCallback<ClaimOutcome>> {
 public:
  ClaimOp(const OpContext& ctx, const ClaimRequest& request, ResultCallback<ClaimOutcome> done, bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/false, sync), claims_(ctx.claims), request_(request) {}

 private:
  void prepare() override {
    calls_.resize(1);
    record_.clear();
    token_ = fill_claim(calls_[0], request_, topology_, core_.options().wait_replicas > 0, record_);
  }

  std::optional<Result<ClaimOutcome>> interpret() override {
    auto step = step_claim(calls_[0], request_, token_, core_.options(), maybe_executed_, redis_answered_);
    remember(claims_, calls_[0], request_, token_, step, record_);
    return step;
  }

  ClaimCache& claims_;
  OwnedClaim request_;
  Token token_ = 0;
  std::string record_;
};

// claim_many: one call per key, grouped per node (one request per node, the
// nodes in parallel). Keys whose reply says "not executed, try again"
// (-LOADING, -TRYAGAIN...) are retried alone; a transport failure after
// sending fails the batch (claims that landed expire with their lease).
class ClaimManyOp final : public Operation<std::vector<ClaimOutcome>, ResultCallback<std::vector<ClaimOutcome>>> {
 public:
  ClaimManyOp(const OpContext& ctx, std::span<const ClaimRequest> requests,
              ResultCallback<std::vector<ClaimOutcome>> done, bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/false, sync), claims_(ctx.claims) {
    requests_.reserve(requests.size());
    for (const ClaimRequest& r : requests) requests_.emplace_back(r);
    done_.resize(requests.size());
    pending_.resize(requests.size());
    for (std::size_t i = 0; i < pending_.size(); ++i) pending_[i] = i;
  }

 private:
  void prepare() override {
    calls_.resize(pending_.size());
    tokens_.assign(pending_.size(), 0);
    read_.assign(pending_.size(), false);
    records_.assign(pending_.size(), std::string());
    const bool wait = core_.options().wait_replicas > 0;
    for (std::size_t j = 0; j < pending_.size(); ++j) {
      tokens_[j] = fill_claim(calls_[j], requests_[pending_[j]], topology_, wait, records_[j]);
    }
  }

  std::optional<Result<std::vector<ClaimOutcome>>> interpret() override {
    std::vector<std::size_t> again;
    std::optional<Error> retry_error;
    bool another_round = false;
    for (std::size_t j = 0; j < pending_.size(); ++j) {
      if (read_[j]) continue;
      const std::size_t i = pending_[j];
      Call& c = calls_[j];
      if (c.reply->type == REDIS_REPLY_ERROR && is_retryable_reply(reply_text(c.reply.get()))) {
        again.push_back(i);
        retry_error = map_error(Failure::kServerReply, reply_text(c.reply.get()));
        read_[j] = true;
        continue;
      }
      bool executed = maybe_executed_;
      std::optional<Result<ClaimOutcome>> step =
          step_claim(c, requests_[i], tokens_[j], core_.options(), executed, redis_answered_);
      remember(claims_, c, requests_[i], tokens_[j], step, records_[j]);
      if (!step) {
        another_round = true;
        continue;
      }
      read_[j] = true;
      if (!*step) return Result<std::vector<ClaimOutcome>>(std::move(*step).error());
      done_[i] = std::move(**step);
    }
    // Only the calls turned into scripts have no reply now; the others keep
    // theirs, and run_calls() sends only calls without one.
    if (another_round) return std::nullopt;
    if (!again.empty()) {
      pending_ = std::move(again);
      maybe_executed_ = false;
      return Result<std::vector<ClaimOutcome>>(std::move(*retry_error));
    }
    std::vector<ClaimOutcome> out;
    out.reserve(done_.size());
    for (auto& o : done_) out.push_back(std::move(*o));
    return Result<std::vector<ClaimOutcome>>(std::move(out));
  }

  ClaimCache& claims_;
  std::vector<OwnedClaim> requests_;
  std::vector<std::string> records_;  // per call: the record of a plain claim
  std::vector<std::optional<ClaimOutcome>> done_;
  std::vector<std::size_t> pending_;  // indices of requests_ still to claim
  std::vector<Token> tokens_;         // per call
  std::vector<bool> read_;            // per call: its reply was read
};

}  // namespace

void RedisStoreImpl::start_claim(const ClaimRequest& request, ResultCallback<ClaimOutcome> done, bool sync) {
  if (Status st = validate_claim_request(request); !st) {
    deliver(done, Result<ClaimOutcome>(std::move(st).error()));
    return;
  }
  if (Status st = check_key(request.key); !st) {
    deliver(done, Result<ClaimOutcome>(std::move(st).error()));
    return;
  }
  (new ClaimOp(context(), request, std::move(done), sync))->start();
}

void RedisStoreImpl::start_claim_many(std::span<const ClaimRequest> requests,
                                      ResultCallback<std::vector<ClaimOutcome>> done, bool sync) {
  // A bad request fails the batch before any claim is written.
  for (const ClaimRequest& r : requests) {
    Status st = validate_claim_request(r);
    if (st) st = check_key(r.key);
    if (!st) {
      deliver(done, Result<std::vector<ClaimOutcome>>(std::move(st).error()));
      return;
    }
  }
  if (requests.empty()) {
    deliver(done, Result<std::vector<ClaimOutcome>>(std::vector<ClaimOutcome>{}));
    return;
  }
  (new ClaimManyOp(context(), requests, std::move(done), sync))->start();
}

}  // namespace idem::redis_detail
