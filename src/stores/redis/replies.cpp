// Reading the scripts' replies; see replies.h.
#include "stores/redis/replies.h"

#include <string>

#include "stores/redis/operation.h"
#include "stores/redis/record_codec.h"

namespace idem::redis_detail {

using std::chrono::milliseconds;

Result<ClaimOutcome> read_claim_script_reply(std::string_view key, const redisReply* reply, bool& maybe_executed,
                                             const LegacyPolicy& policy) {
  if (Status st = reply_status(reply, maybe_executed); !st) return std::move(st).error();
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) return bad_reply("claim: not an array");
  const std::string_view tag = reply_text(reply->element[0]);
  ClaimOutcome out;
  if (tag == "A") {
    long long token = 0;
    long long attempt = 0;
    long long lease = 0;
    if (reply->elements < 5 || !reply_int(reply->element[2], token) || !reply_int(reply->element[3], attempt) ||
        !reply_int(reply->element[4], lease) || token < 0 || attempt < 0 || attempt > UINT32_MAX) {
      return bad_reply("claim: malformed acquire");
    }
    const std::string_view kind = reply_text(reply->element[1]);
    out.status = ClaimStatus::kAcquired;
    out.acquire_kind = kind == "T" ? AcquireKind::kTakeover : kind == "R" ? AcquireKind::kRetry : AcquireKind::kNew;
    out.token = static_cast<Token>(token);
    out.attempt = static_cast<std::uint32_t>(attempt);
    out.lease_expires_at = Timestamp(milliseconds(lease));
    if (reply->elements >= 7 && out.acquire_kind != AcquireKind::kNew) {
      out.checkpoint =
          Checkpoint{std::string(reply_text(reply->element[5])), std::string(reply_text(reply->element[6]))};
    }
    return out;
  }
  if (reply->elements < 3) return bad_reply("claim: short reply");
  if (tag == "C") {
    out.status = ClaimStatus::kCompleted;
  } else if (tag == "F") {
    out.status = ClaimStatus::kFailed;
  } else if (tag == "I") {
    out.status = ClaimStatus::kInProgress;
  } else if (tag == "M") {
    out.status = ClaimStatus::kMismatch;
  } else {
    return bad_reply("claim: unknown status");
  }
  long long expire_at = 0;
  if (!reply_int(reply->element[1], expire_at) || reply->element[2]->type != REDIS_REPLY_STRING) {
    return bad_reply("claim: bad record reply");
  }
  Result<DecodedRecord> rec = decode_record(key, reply_text(reply->element[2]), expire_at, policy);
  if (!rec) return std::move(rec).error();
  out.record = std::move(rec->record);
  return out;
}

Result<std::optional<IdempotencyRecord>> read_get_reply(std::string_view key, const redisReply* r, bool& maybe_executed,
                                                        const LegacyPolicy& policy) {
  if (Status st = reply_status(r, maybe_executed); !st) return std::move(st).error();
  if (r->type == REDIS_REPLY_NIL) return std::optional<IdempotencyRecord>();
  long long expire_at = 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_int(r->element[0], expire_at) ||
      r->element[1]->type != REDIS_REPLY_STRING) {
    return bad_reply("get");
  }
  Result<DecodedRecord> rec = decode_record(key, reply_text(r->element[1]), expire_at, policy);
  if (!rec) return std::move(rec).error();
  return std::optional<IdempotencyRecord>(std::move(rec->record));
}

Result<long long> read_owner_reply(const redisReply* reply, std::string_view what, bool& maybe_executed) {
  if (Status st = reply_status(reply, maybe_executed); !st) return std::move(st).error();
  long long code = 0;
  if (!reply_int(reply, code)) return bad_reply(what);
  return code;
}

}  // namespace idem::redis_detail
