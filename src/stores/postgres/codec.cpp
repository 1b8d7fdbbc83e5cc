#include "stores/postgres/codec.h"

#include <limits>
#include <vector>

#include "stores/postgres/sql.h"

namespace idem::pg {
namespace {

// Unix time of PostgreSQL's epoch, 2000-01-01 00:00:00 UTC, in microseconds.
constexpr std::int64_t kPgEpochUnixMicros = 946'684'800'000'000;

template <typename Int>
std::optional<Int> decode_be(std::string_view bytes) noexcept {
  if (bytes.size() != sizeof(Int)) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : bytes) v = (v << 8U) | static_cast<unsigned char>(c);
  using Unsigned = std::make_unsigned_t<Int>;
  return static_cast<Int>(static_cast<Unsigned>(v));
}

Error corrupt(std::string_view key, std::string_view what) {
  std::string msg = "postgresql: record";
  if (!key.empty()) {
    msg += " '";
    msg.append(key);
    msg += "'";
  }
  msg += " cannot be decoded: ";
  msg.append(what);
  msg += " (the table was changed outside Idem or by a newer Idem; delete the record)";
  return Error(ErrorCode::kCorrupt, std::move(msg));
}

// Decodes UTF-8 code points; false on malformed input.
bool next_code_point(std::string_view s, std::size_t& i, char32_t& cp) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    ++i;
    return true;
  }
  if ((b0 & 0xe0U) == 0xc0) {
    n = 1;
    cp = b0 & 0x1fU;
    min = 0x80;
  } else if ((b0 & 0xf0U) == 0xe0) {
    n = 2;
    cp = b0 & 0x0fU;
    min = 0x800;
  } else if ((b0 & 0xf8U) == 0xf0) {
    n = 3;
    cp = b0 & 0x07U;
    min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i <= n) return false;
  for (std::size_t k = 1; k <= n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0U) != 0x80) return false;
    cp = (cp << 6U) | (b & 0x3fU);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += n + 1;
  return true;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0U | (cp >> 6U));
    out += static_cast<char>(0x80U | (cp & 0x3fU));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0U | (cp >> 12U));
    out += static_cast<char>(0x80U | ((cp >> 6U) & 0x3fU));
    out += static_cast<char>(0x80U | (cp & 0x3fU));
  } else {
    out += static_cast<char>(0xf0U | (cp >> 18U));
    out += static_cast<char>(0x80U | ((cp >> 12U) & 0x3fU));
    out += static_cast<char>(0x80U | ((cp >> 6U) & 0x3fU));
    out += static_cast<char>(0x80U | (cp & 0x3fU));
  }
}

}  // namespace

std::string encode_int8(std::int64_t v) {
  std::string out(8, '\0');
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(u & 0xffU);
    u >>= 8U;
  }
  return out;
}

std::string encode_array(unsigned element_type, std::span<const std::string_view> elements) {
  std::size_t size = 20;
  for (std::string_view e : elements) size += 4 + e.size();
  std::string out;
  out.reserve(size);
  auto int4 = [&out](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> static_cast<unsigned>(shift)) & 0xffU);
  };
  int4(1);  // dimensions
  int4(0);  // no NULLs
  int4(element_type);
  int4(static_cast<std::uint32_t>(elements.size()));
  int4(1);  // lower bound
  for (std::string_view e : elements) {
    int4(static_cast<std::uint32_t>(e.size()));
    out.append(e);
  }
  return out;
}

std::optional<std::int64_t> decode_int8(std::string_view bytes) noexcept { return decode_be<std::int64_t>(bytes); }
std::optional<std::int32_t> decode_int4(std::string_view bytes) noexcept { return decode_be<std::int32_t>(bytes); }
std::optional<std::int16_t> decode_int2(std::string_view bytes) noexcept { return decode_be<std::int16_t>(bytes); }

std::optional<bool> decode_bool(std::string_view bytes) noexcept {
  if (bytes.size() != 1) return std::nullopt;
  return bytes[0] != '\0';
}

std::optional<Timestamp> decode_timestamptz(std::string_view bytes) noexcept {
  const std::optional<std::int64_t> micros = decode_int8(bytes);
  if (!micros) return std::nullopt;
  // +-infinity are INT64_MAX / INT64_MIN; keep well inside int64 after the
  // epoch shift (PostgreSQL's own range ends in year 294276).
  constexpr std::int64_t kLimit = std::numeric_limits<std::int64_t>::max() / 2;
  if (*micros >= kLimit || *micros <= -kLimit) return std::nullopt;
  const std::int64_t unix_micros = *micros + kPgEpochUnixMicros;
  std::int64_t ms = unix_micros / 1000;
  if (unix_micros % 1000 < 0) --ms;  // floor, also before 1970
  return Timestamp(std::chrono::milliseconds(ms));
}

Result<IdempotencyRecord> decode_record(std::span<const Field> f) {
  if (f.size() < postgres_sql::kRecordColumns) return corrupt({}, "too few columns");
  IdempotencyRecord r;
  auto text = [&](std::size_t i, std::string& out, const char* name) -> std::optional<Error> {
    if (f[i].null) return corrupt(r.idempotency_key, std::string(name) + " is NULL");
    out.assign(f[i].bytes);
    return std::nullopt;
  };
  auto time = [&](std::size_t i, const char* name) -> Result<Timestamp> {
    if (f[i].null) return corrupt(r.idempotency_key, std::string(name) + " is NULL");
    std::optional<Timestamp> t = decode_timestamptz(f[i].bytes);
    if (!t) return corrupt(r.idempotency_key, std::string(name) + " is not a finite timestamp");
    return *t;
  };
  if (auto e = text(0, r.idempotency_key, "key")) return std::move(*e);
  if (auto e = text(1, r.event_id, "event_id")) return std::move(*e);
  if (auto e = text(2, r.event_type, "event_type")) return std::move(*e);
  std::string status;
  if (auto e = text(3, status, "status")) return std::move(*e);
  std::optional<ProcessingStatus> st = parse_status(status);
  if (!st) return corrupt(r.idempotency_key, "unknown status");
  r.status = *st;
  if (!f[4].null) r.result = std::string(f[4].bytes);
  if (!f[5].null) r.error = std::string(f[5].bytes);
  std::optional<bool> retryable = f[6].null ? std::nullopt : decode_bool(f[6].bytes);
  if (!retryable) return corrupt(r.idempotency_key, "retryable is not a boolean");
  r.retryable = *retryable;
  Result<Timestamp> first_seen = time(7, "first_seen_at");
  if (!first_seen) return std::move(first_seen).error();
  r.first_seen_at = *first_seen;
  if (!f[8].null) {
    Result<Timestamp> completed = time(8, "completed_at");
    if (!completed) return std::move(completed).error();
    r.completed_at = *completed;
  }
  std::optional<std::int32_t> attempt = f[9].null ? std::nullopt : decode_int4(f[9].bytes);
  if (!attempt || *attempt < 0) return corrupt(r.idempotency_key, "attempt is not a non-negative integer");
  r.attempt = static_cast<std::uint32_t>(*attempt);
  std::optional<std::int64_t> token = f[10].null ? std::nullopt : decode_int8(f[10].bytes);
  if (!token || *token < 0) return corrupt(r.idempotency_key, "token is not a non-negative integer");
  r.token = static_cast<Token>(*token);
  Result<Timestamp> lease = time(11, "lease_expires_at");
  if (!lease) return std::move(lease).error();
  r.lease_expires_at = *lease;
  if (auto e = text(12, r.fingerprint, "fingerprint")) return std::move(*e);
  Result<Timestamp> expires = time(13, "expires_at");
  if (!expires) return std::move(expires).error();
  r.expires_at = *expires;
  if (!f[14].null) r.checkpoint = Checkpoint{std::string(f[14].bytes), f[15].null ? "" : std::string(f[15].bytes)};
  return r;
}

Result<ClaimRow> decode_claim_row(std::span<const Field> f) {
  if (f.size() != postgres_sql::kClaimColumns) return corrupt({}, "a claim answer has the wrong number of columns");
  Result<IdempotencyRecord> record = decode_record(f.first(postgres_sql::kRecordColumns));
  if (!record) return std::move(record).error();
  ClaimRow row;
  row.record = std::move(*record);
  const std::size_t k = postgres_sql::kRecordColumns;
  std::optional<std::int16_t> kind = f[k].null ? std::nullopt : decode_int2(f[k].bytes);
  if (!kind || *kind < 0 || *kind > 2) return corrupt(row.record.idempotency_key, "acquire_kind is not 0, 1 or 2");
  row.acquire_kind = *kind == 1 ? AcquireKind::kTakeover : *kind == 2 ? AcquireKind::kRetry : AcquireKind::kNew;
  std::optional<bool> acquired = f[k + 1].null ? std::nullopt : decode_bool(f[k + 1].bytes);
  if (!acquired) return corrupt(row.record.idempotency_key, "the acquired flag is not a boolean");
  row.acquired = *acquired;
  std::optional<bool> blocked = f[k + 2].null ? std::nullopt : decode_bool(f[k + 2].bytes);
  if (!blocked) return corrupt(row.record.idempotency_key, "the blocked flag is not a boolean");
  row.blocked = *blocked;
  return row;
}

bool valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  char32_t cp = 0;
  while (i < text.size()) {
    if (text[i] == '\0' || !next_code_point(text, i, cp)) return false;
  }
  return true;
}

std::optional<std::string> prefix_upper_bound(std::string_view prefix) {
  std::vector<char32_t> points;
  std::size_t i = 0;
  while (i < prefix.size()) {
    char32_t cp = 0;
    if (prefix[i] == '\0' || !next_code_point(prefix, i, cp)) return std::nullopt;
    points.push_back(cp);
  }
  // UTF-8's byte order is code point order, so bumping the last code point
  // that can be bumped gives the first string past the prefix's range.
  while (!points.empty()) {
    char32_t next = points.back() + 1;
    if (next == 0xd800) next = 0xe000;  // surrogates are not characters
    if (next <= 0x10ffff) {
      points.back() = next;
      std::string out;
      out.reserve(prefix.size() + 1);
      for (char32_t cp : points) append_utf8(out, cp);
      return out;
    }
    points.pop_back();
  }
  return std::nullopt;
}

}  // namespace idem::pg
