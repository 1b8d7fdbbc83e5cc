// File: src/stores/redis/json_layout.h
//
// Records as JSON: the original Python module's records (read in place, so a
// fleet can move to Idem one consumer at a time under the same prefix), and
// Idem's own JSON layout (`layout=json`), which the original module can read.
//
// The original module stored, per key, JSON of its record model:
//
//   {"idempotency_key": "...", "event_id": "...", "event_type": "...",
//    "status": "PROCESSING" | "COMPLETED" | "FAILED", "result": {...} | null,
//    "error": "..." | null, "first_seen_at": "<ISO 8601>", "completed_at": "<ISO 8601>" | null}
//
// A record without a "token" is such a legacy record: it has no lease, no
// fencing token and no fingerprint. It reads back with token 0 (Idem never
// hands out 0; that is how get/list mark it), attempt 1, and, while
// PROCESSING, a lease of first_seen_at + LegacyPolicy::lease.
//
// Idem's JSON layout has every field above, plus its own (the original module
// ignores unknown fields):
//
//   "token": "<decimal>"          a string: Lua's cjson would round a 16-digit number
//   "attempt": n, "lease_expires_at_ms": ms, "expires_at_ms": ms
//   "fingerprint": "...", "retryable": true | false,
//   "checkpoint": null | {"name": "...", "data": "..."}  ({"base64": true, ...} when not UTF-8)
//   "watched": true               a waiter asked to be told (see wait_settled)
//
// A result that is a JSON object is stored as that very text; any other
// result is wrapped, {"idem_value": "<text>"} (or {"idem_base64": "..."} when
// it is not UTF-8), so that the original module still reads an object, and
// unwrapped when read. An error that is not UTF-8 is stored lossily in
// "error" and exactly in "error_base64".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "idem/core/error.h"
#include "idem/stores/redis.h"
#include "stores/redis/record_codec.h"

namespace idem::redis_detail {

// is_json_record() is true for a value in either JSON form (legacy or
// layout=json): the packed layout never starts with '{'.
inline bool is_json_record(std::string_view value) { return !value.empty() && value.front() == '{'; }

// legacy_policy() is the LegacyPolicy a store's options ask for.
inline LegacyPolicy legacy_policy(const RedisStoreOptions& options) {
  return LegacyPolicy{options.legacy_records, options.legacy_lease};
}

// decode_json_record() reads a JSON record; kCorrupt naming the key for
// anything else (not JSON, truncated, not the record model), and for a legacy
// record when `policy.read_legacy` is false. `expire_at_ms`: the key's
// PEXPIRETIME when known (a legacy record does not state its expiry).
Result<DecodedRecord> decode_json_record(std::string_view key, std::string_view value,
                                         std::optional<long long> expire_at_ms, const LegacyPolicy& policy);

// encode_json_record() writes `record` in Idem's JSON layout; nullopt when it
// cannot be written (an event id or type that is not UTF-8, no expiry).
std::optional<std::string> encode_json_record(std::string_view key, const IdempotencyRecord& record);

// json_claimable() is false when a claim's event id, type or fingerprint is
// not UTF-8: the JSON layout stores them as JSON strings.
bool json_claimable(const ClaimRequest& request);

// new_json_claim() is new_claim_record() in the JSON layout.
std::optional<NewClaim> new_json_claim(const ClaimRequest& request, Token token);

// finish_json_record() is finish_record() for a JSON PROCESSING record that
// this store wrote: `claimed` finished at `now` with status C, F or X.
std::optional<std::pair<std::string, long long>> finish_json_record(std::string_view key, std::string_view claimed,
                                                                    char status, std::string_view value, Timestamp now,
                                                                    std::chrono::milliseconds ttl);

// finish_json_fields() is the `"result":...,"error":...` tail the JSON finish
// script appends for status C, F or X and `value`.
std::string finish_json_fields(char status, std::string_view value);

// json_checkpoint() is the JSON of a checkpoint, for the JSON checkpoint script.
std::string json_checkpoint(const Checkpoint& checkpoint);

// ISO 8601 date-times as the original module wrote them: date, 'T' or ' ',
// time with optional seconds and fraction (any number of digits, cut to
// milliseconds), and an optional offset ('Z', ±HH:MM, ±HHMM, ±HH; none: UTC).
std::optional<Timestamp> parse_iso8601(std::string_view text);
// format_iso8601() writes UTC with milliseconds and "+00:00", which every
// Python datetime.fromisoformat reads.
std::string format_iso8601(Timestamp time);

}  // namespace idem::redis_detail
