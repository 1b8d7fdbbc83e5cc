// The packed record format; see record_codec.h.
#include "stores/redis/record_codec.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "stores/redis/json_layout.h"
#include "stores/redis/resp.h"

namespace idem::redis_detail {
namespace {

using std::chrono::milliseconds;

// Bounds that keep every sum below 2^63: ms and µs of any plausible date.
constexpr long long kMaxMs = 4'000'000'000'000'000LL;  // ~ year 128,000
constexpr long long kMaxToken = 4'000'000'000'000'000'000LL;

Timestamp ms_to_ts(long long ms) { return Timestamp(milliseconds(ms)); }

bool number(std::string_view text, long long& out, long long max) {
  return text_int(text, out) && out >= 0 && out <= max;
}

void append_length(std::string& out, const std::optional<std::string>& value) {
  if (value) append_decimal(out, static_cast<std::uint64_t>(value->size()));
}

}  // namespace

Result<DecodedRecord> decode_record(std::string_view key, std::string_view v, std::optional<long long> expire_at_ms,
                                    const LegacyPolicy& policy) {
  if (is_json_record(v)) return decode_json_record(key, v, expire_at_ms, policy);
  auto corrupt = [&](std::string_view why) {
    return Error(ErrorCode::kCorrupt,
                 "redis: record '" + std::string(key) + "' cannot be decoded: " + std::string(why));
  };
  std::size_t pos = 0;
  // next() returns the text up to the next ',' or ';' and the separator.
  auto next = [&](std::string_view& out, char& sep) {
    const auto end = v.find_first_of(",;", pos);
    if (end == std::string_view::npos) return false;
    out = v.substr(pos, end - pos);
    sep = v[end];
    pos = end + 1;
    return true;
  };
  // Header: 7 fields (format 1) or 8 (format 2), the last ending with ';'.
  std::array<std::string_view, 8> head{};
  std::size_t fields = 0;
  for (;;) {
    char sep = 0;
    if (fields == head.size() || !next(head[fields], sep)) return corrupt("truncated header");
    ++fields;
    if (sep == ';') break;
  }
  if (fields != 7 && fields != 8) return corrupt("wrong number of header fields");
  const bool format2 = fields == 8;
  std::array<std::string_view, 7> lens{};
  for (std::size_t i = 0; i < lens.size(); ++i) {
    char sep = 0;
    if (!next(lens[i], sep) || sep != (i + 1 == lens.size() ? ';' : ',')) return corrupt("truncated lengths");
  }
  DecodedRecord out;
  IdempotencyRecord& rec = out.record;
  rec.idempotency_key = std::string(key);
  const std::string_view s = head[0];
  if (s == "P") {
    rec.status = ProcessingStatus::kProcessing;
  } else if (s == "C") {
    rec.status = ProcessingStatus::kCompleted;
  } else if (s == "F") {
    rec.status = ProcessingStatus::kFailed;
  } else if (s == "X") {
    rec.status = ProcessingStatus::kFailed;
    rec.retryable = false;
  } else {
    return corrupt("unknown status");
  }
  long long token = 0;
  long long attempt = 0;
  long long first = 0;
  if (!number(head[1], token, kMaxToken) || !number(head[2], attempt, UINT32_MAX) || !number(head[3], first, kMaxMs)) {
    return corrupt("bad token, attempt or first-seen time");
  }
  if (format2) {
    // head[3] is fdelta: first seen = token / 1000 - fdelta.
    if (first > token / 1000) return corrupt("first-seen time after the token");
    first = token / 1000 - first;
  }
  rec.token = static_cast<Token>(token);
  rec.attempt = static_cast<std::uint32_t>(attempt);
  rec.first_seen_at = ms_to_ts(first);
  if (!head[5].empty()) {
    long long delta = 0;
    if (!number(head[5], delta, kMaxMs)) return corrupt("bad completion time");
    rec.completed_at = ms_to_ts(first + delta);
  }
  if (!head[4].empty()) {
    long long lease = 0;
    if (!number(head[4], lease, kMaxMs)) return corrupt("bad lease");
    rec.lease_expires_at = ms_to_ts(lease);
  } else {
    // The lease is dropped once the record leaves PROCESSING (it saves
    // bytes); it ended when the record was completed or failed.
    rec.lease_expires_at = rec.completed_at.value_or(rec.first_seen_at);
  }
  const std::string_view mode = head[6];
  bool blob = false;
  if (mode == "E" || mode == "W") {
    blob = false;
  } else if (mode == "e" || mode == "w") {
    blob = true;
  } else {
    return corrupt("unknown event id mode");
  }
  out.watched = mode == "W" || mode == "w";
  if (format2) {
    long long delta = 0;
    if (!number(head[7], delta, kMaxMs)) return corrupt("bad expiry");
    rec.expires_at = ms_to_ts(first + delta);
  } else if (expire_at_ms) {
    // -1: no TTL (never written by this store; someone ran PERSIST).
    rec.expires_at = *expire_at_ms >= 0 ? ms_to_ts(std::min(*expire_at_ms, kMaxMs)) : Timestamp::max();
  } else {
    out.expiry_known = false;
  }
  // Values: e (only in mode e), y, p, r, x, kn, kd.
  std::array<std::optional<std::string_view>, 7> values{};
  for (std::size_t i = 0; i < lens.size(); ++i) {
    if (lens[i].empty()) {
      if (i < 3) return corrupt("missing length");
      continue;
    }
    long long n = 0;
    if (!number(lens[i], n, kMaxMs)) return corrupt("bad length");
    const auto len = static_cast<std::size_t>(n);
    if (i == 0 && !blob) {
      if (len > key.size()) return corrupt("event id longer than the key");
      values[0] = key.substr(key.size() - len);
      continue;
    }
    if (len > v.size() - pos) return corrupt("value shorter than its lengths");
    values[i] = v.substr(pos, len);
    pos += len;
  }
  if (pos != v.size()) return corrupt("trailing bytes");
  rec.event_id = std::string(*values[0]);
  rec.event_type = std::string(*values[1]);
  rec.fingerprint = std::string(*values[2]);
  if (values[3]) rec.result = std::string(*values[3]);
  if (values[4]) rec.error = std::string(*values[4]);
  if (values[5]) rec.checkpoint = Checkpoint{std::string(*values[5]), std::string(values[6].value_or(""))};
  return out;
}

std::optional<std::string> encode_record(std::string_view key, const IdempotencyRecord& r) {
  const long long first = r.first_seen_at.time_since_epoch().count();
  const long long token = static_cast<long long>(r.token);
  if (r.token > static_cast<Token>(kMaxToken) || first < 0 || first > token / 1000) return std::nullopt;
  if (r.expires_at == Timestamp::max() || r.expires_at < r.first_seen_at) return std::nullopt;
  if (r.completed_at && *r.completed_at < r.first_seen_at) return std::nullopt;
  const bool processing = r.status == ProcessingStatus::kProcessing;
  if (processing && r.lease_expires_at.time_since_epoch().count() < 0) return std::nullopt;
  // A finished record keeps no lease: it reads back as ended at completion.
  if (!processing && r.lease_expires_at != r.completed_at.value_or(r.first_seen_at)) return std::nullopt;
  const bool in_key = event_id_in_key(key, r.event_id);
  std::string out;
  out.reserve(64 + r.event_type.size() + r.fingerprint.size() + (r.result ? r.result->size() : 0) +
              (r.error ? r.error->size() : 0));
  switch (r.status) {
    case ProcessingStatus::kProcessing: out += 'P'; break;
    case ProcessingStatus::kCompleted: out += 'C'; break;
    case ProcessingStatus::kFailed: out += r.retryable ? 'F' : 'X'; break;
  }
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(r.token));
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(r.attempt));
  out += ',';
  append_decimal(out, static_cast<std::int64_t>(token / 1000 - first));
  out += ',';
  if (processing) append_decimal(out, static_cast<std::int64_t>(r.lease_expires_at.time_since_epoch().count()));
  out += ',';
  if (r.completed_at)
    append_decimal(out, static_cast<std::int64_t>(r.completed_at->time_since_epoch().count() - first));
  out += ',';
  out += in_key ? 'E' : 'e';
  out += ',';
  append_decimal(out, static_cast<std::int64_t>(r.expires_at.time_since_epoch().count() - first));
  out += ';';
  append_decimal(out, static_cast<std::uint64_t>(r.event_id.size()));
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(r.event_type.size()));
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(r.fingerprint.size()));
  out += ',';
  append_length(out, r.result);
  out += ',';
  append_length(out, r.error);
  out += ',';
  std::optional<std::string> name;
  std::optional<std::string> data;
  if (r.checkpoint) {
    name = r.checkpoint->name;
    data = r.checkpoint->data;
  }
  append_length(out, name);
  out += ',';
  append_length(out, data);
  out += ';';
  if (!in_key) out += r.event_id;
  out += r.event_type;
  out += r.fingerprint;
  if (r.result) out += *r.result;
  if (r.error) out += *r.error;
  if (name) out += *name;
  if (data) out += *data;
  return out;
}

std::optional<std::pair<std::string, long long>> finish_record(std::string_view claimed, char status,
                                                               std::string_view value, Timestamp now,
                                                               std::chrono::milliseconds ttl) {
  // Header: P,token,attempt,fdelta,lease,cdelta,M,xdelta; lengths: 7 fields.
  std::array<std::string_view, 15> f{};
  std::size_t pos = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    const char sep = i == 7 || i == 14 ? ';' : ',';
    const auto end = claimed.find(sep, pos);
    if (end == std::string_view::npos) return std::nullopt;
    f[i] = claimed.substr(pos, end - pos);
    pos = end + 1;
  }
  if (f[0] != "P" || f[6].size() != 1) return std::nullopt;
  long long token = 0;
  long long fdelta = 0;
  if (!number(f[1], token, kMaxToken) || !number(f[3], fdelta, kMaxMs) || fdelta > token / 1000) return std::nullopt;
  const long long first = token / 1000 - fdelta;
  // The values kept: event id (mode e), type, fingerprint; then the old
  // result and error (none while PROCESSING) are skipped; the checkpoint kept.
  long long le = 0;
  long long ly = 0;
  long long lp = 0;
  if (!number(f[8], le, kMaxMs) || !number(f[9], ly, kMaxMs) || !number(f[10], lp, kMaxMs) || !f[11].empty() ||
      !f[12].empty()) {
    return std::nullopt;
  }
  const char mode = f[6][0] == 'e' || f[6][0] == 'w' ? 'e' : 'E';
  const auto kept = static_cast<std::size_t>((mode == 'e' ? le : 0) + ly + lp);
  if (kept > claimed.size() - pos) return std::nullopt;
  const long long done = std::max<long long>(now.time_since_epoch().count(), first);
  const long long expire = done + ttl.count();
  std::string out;
  out.reserve(claimed.size() + value.size() + 24);
  out += status;
  out += ',';
  out.append(f[1]);
  out += ',';
  out.append(f[2]);
  out += ',';
  out.append(f[3]);
  out += ",,";
  append_decimal(out, static_cast<std::int64_t>(done - first));
  out += ',';
  out += mode;
  out += ',';
  append_decimal(out, static_cast<std::int64_t>(expire - first));
  out += ';';
  out.append(f[8]);
  out += ',';
  out.append(f[9]);
  out += ',';
  out.append(f[10]);
  out += ',';
  if (status == 'C') append_decimal(out, static_cast<std::uint64_t>(value.size()));
  out += ',';
  if (status != 'C') append_decimal(out, static_cast<std::uint64_t>(value.size()));
  out += ',';
  out.append(f[13]);
  out += ',';
  out.append(f[14]);
  out += ';';
  out.append(claimed.substr(pos, kept));
  out.append(value);
  out.append(claimed.substr(pos + kept));
  return std::make_pair(std::move(out), expire);
}

NewClaim new_claim_record(const ClaimRequest& request, Token token) {
  const long long first = static_cast<long long>(token / 1000);
  const long long lease = first + request.lease.count();
  const long long expire = first + std::max(request.ttl, request.lease).count();
  const bool in_key = event_id_in_key(request.key, request.event_id);
  NewClaim claim;
  std::string& out = claim.value;
  out.reserve(48 + request.event_type.size() + request.fingerprint.size() + (in_key ? 0 : request.event_id.size()));
  out += "P,";
  append_decimal(out, static_cast<std::uint64_t>(token));
  out += ",1,0,";
  append_decimal(out, static_cast<std::int64_t>(lease));
  out += ",,";
  out += in_key ? 'E' : 'e';
  out += ',';
  append_decimal(out, static_cast<std::int64_t>(expire - first));
  out += ';';
  append_decimal(out, static_cast<std::uint64_t>(request.event_id.size()));
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(request.event_type.size()));
  out += ',';
  append_decimal(out, static_cast<std::uint64_t>(request.fingerprint.size()));
  out += ",,,,;";
  if (!in_key) out += request.event_id;
  out += request.event_type;
  out += request.fingerprint;
  claim.expire_at_ms = expire;
  claim.lease_expires_at = Timestamp(std::chrono::milliseconds(lease));
  return claim;
}

}  // namespace idem::redis_detail
