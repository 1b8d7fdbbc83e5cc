// File: src/stores/redis/record_codec.h
//
// The packed record: one Redis string per key, a short text header followed by
// the variable-length values, so that a claim is a single
// `SET key record NX GET PXAT expiry` and a completed record with a 36-byte key
// and a 30-byte result stays under 200 bytes (MEMORY USAGE).
//
// Format 2 (written by this version):
//
//   S,token,attempt,fdelta,lease,cdelta,M,xdelta;le,ly,lp,lr,lx,lkn,lkd;<e><y><p><r><x><kn><kd>
//
//   S       P processing, C completed, F failed (retryable), X failed (terminal)
//   token   fencing token (decimal; microseconds of server time, see docs/design.md)
//   attempt claims so far
//   fdelta  first seen = token / 1000 - fdelta (ms since the epoch); 0 for a
//           record created by a claim, so the common case costs one byte
//   lease   lease expiry, ms since the epoch (empty once finished)
//   cdelta  completed/failed at, ms after first seen (empty while processing)
//   M       E: the event id is the last `le` bytes of the key (the default,
//           where the idempotency key is the event id); e: it is the blob <e>.
//           W / w: the same, and a waiter asked to be told when the record
//           settles (complete and fail then PUBLISH idem:settled:<key>)
//   xdelta  expiry = first seen + xdelta (ms); the key's TTL is set to exactly
//           that instant (PXAT), so the record tells its own expiry and a
//           duplicate needs no second command
//   le..lkd lengths of event id, type, fingerprint, result, error, checkpoint
//           name and data; an empty length means "absent" (0 is present and
//           empty), for result, error and checkpoint
//
// Format 1 (written before; still read, and rewritten as format 2 by the next
// write) has no xdelta and an absolute first-seen time:
//
//   S,token,attempt,first,lease,cdelta,M;le,...
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "idem/core/error.h"
#include "idem/core/record.h"
#include "idem/core/store.h"

namespace idem::redis_detail {

struct DecodedRecord {
  IdempotencyRecord record;
  // False for a format-1 record read without its expire time (a plain GET):
  // record.expires_at is then unknown and must be asked for (PEXPIRETIME).
  bool expiry_known = true;
  bool watched = false;  // M is W or w
  bool json = false;     // a JSON record (json_layout.h): the original module's, or layout=json
  bool legacy = false;   // written by the original module (no token); record.token is 0
};

// LegacyPolicy says how records of the original Python module are read
// (json_layout.h): at all, and how long a PROCESSING one counts as in
// progress after its first_seen_at (it has no lease of its own).
struct LegacyPolicy {
  bool read_legacy = true;
  std::chrono::milliseconds lease{300'000};
};

// decode_record() reads either format, and JSON records (json_layout.h,
// read under `policy`). `expire_at_ms` is the key's PEXPIRETIME when the
// caller has it (-1: no TTL); format 2 carries its own. kCorrupt when the
// value is not a well-formed record; never trusts a length it was given.
Result<DecodedRecord> decode_record(std::string_view key, std::string_view value, std::optional<long long> expire_at_ms,
                                    const LegacyPolicy& policy = {});

// encode_record() writes format 2; nullopt when `record` cannot be written
// (a time before its first-seen time, a first-seen time after its token, no
// expiry).
std::optional<std::string> encode_record(std::string_view key, const IdempotencyRecord& record);

// NewClaim is the record of a claim on an absent key, chosen by the client.
struct NewClaim {
  std::string value;
  long long expire_at_ms = 0;  // for PXAT
  Timestamp lease_expires_at{};
};

// new_claim_record() builds it: first seen = token / 1000, lease and expiry
// from there (expiry: max(ttl, lease), so the record outlives its lease).
NewClaim new_claim_record(const ClaimRequest& request, Token token);

// finish_record() is `claimed` (a PROCESSING record) finished at `now` with
// status C, F or X and `value` (the result, or the error), kept for `ttl`:
// the same record the finish script would write, built by splicing the
// header and the values. Returns it and its expiry (ms), or nullopt when
// `claimed` is not a format-2 PROCESSING record.
std::optional<std::pair<std::string, long long>> finish_record(std::string_view claimed, char status,
                                                               std::string_view value, Timestamp now,
                                                               std::chrono::milliseconds ttl);

// event_id_in_key() is true when the record stores only the event id's length
// (mode E): the key ends with it.
inline bool event_id_in_key(std::string_view key, std::string_view event_id) {
  return !event_id.empty() && key.ends_with(event_id);
}

}  // namespace idem::redis_detail
