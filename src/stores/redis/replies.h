// File: src/stores/redis/replies.h
//
// Reading the replies of the claim and get scripts into idem values. Every
// shape is checked before use: a reply of the wrong shape is kInternal (or
// kCorrupt for a record that does not decode), never a crash and never an
// acquired claim.
#pragma once

#include <optional>
#include <string_view>

#include "idem/core/error.h"
#include "idem/core/record.h"
#include "stores/redis/record_codec.h"
#include "stores/redis/resp.h"

namespace idem::redis_detail {

// read_claim_script_reply(): {'A', kind, token, attempt, lease_ms [, ck
// name, ck data]} or {status, expire_at_ms, record}; server error replies
// become errors (retryable ones mark `maybe_executed` false).
Result<ClaimOutcome> read_claim_script_reply(std::string_view key, const redisReply* reply, bool& maybe_executed,
                                             const LegacyPolicy& policy = {});

// read_get_reply(): nil, or {expire_at_ms, record}.
Result<std::optional<IdempotencyRecord>> read_get_reply(std::string_view key, const redisReply* reply,
                                                        bool& maybe_executed, const LegacyPolicy& policy = {});

// read_owner_reply(): the integer code of complete/fail/extend/checkpoint
// and of the swap script.
Result<long long> read_owner_reply(const redisReply* reply, std::string_view what, bool& maybe_executed);

}  // namespace idem::redis_detail
