// File: src/stores/postgres/codec.h
//
// PostgreSQL's binary wire formats for the few types the store uses, and the
// decoding of a record row. Pure functions over bytes, so that the row
// decoder can be fuzzed without a server (fuzz/fuzz_postgres.cpp): whatever a
// server (or a tampered table) sends, decoding ends in a value or kCorrupt.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "idem/core/error.h"
#include "idem/core/record.h"

namespace idem::pg {

// One field of a result row, in binary format.
struct Field {
  bool null = true;
  std::string_view bytes{};
};

// Binary parameter encodings (network byte order).
std::string encode_int8(std::int64_t v);
inline std::string encode_bool(bool v) { return std::string(1, v ? '\1' : '\0'); }
// A one-dimensional array without NULLs of already-encoded elements.
std::string encode_array(unsigned element_type, std::span<const std::string_view> elements);

// Decoders: nullopt when the bytes do not have the type's exact size.
std::optional<std::int64_t> decode_int8(std::string_view bytes) noexcept;
std::optional<std::int32_t> decode_int4(std::string_view bytes) noexcept;
std::optional<std::int16_t> decode_int2(std::string_view bytes) noexcept;
std::optional<bool> decode_bool(std::string_view bytes) noexcept;
// timestamptz: microseconds since 2000-01-01 UTC, truncated to milliseconds
// (floor, so that order is kept). nullopt for +-infinity and out of range.
std::optional<Timestamp> decode_timestamptz(std::string_view bytes) noexcept;

// decode_record() reads the 16 record columns (sql.h's record column list).
Result<IdempotencyRecord> decode_record(std::span<const Field> fields);

// A claim answer row: the record, then acquire_kind, acquired, blocked (see
// sql.h's kClaim).
struct ClaimRow {
  IdempotencyRecord record;
  AcquireKind acquire_kind = AcquireKind::kNew;
  bool acquired = false;
  bool blocked = false;
};
Result<ClaimRow> decode_claim_row(std::span<const Field> fields);

// prefix_upper_bound() is the smallest UTF-8 string above every string that
// starts with `prefix` (its last code point plus one), or nullopt when there
// is none (all U+10FFFF) or the prefix is not valid UTF-8.
std::optional<std::string> prefix_upper_bound(std::string_view prefix);

// valid_utf8() is true for well-formed UTF-8 without NUL (what a PostgreSQL
// text value can hold).
bool valid_utf8(std::string_view text) noexcept;

}  // namespace idem::pg
