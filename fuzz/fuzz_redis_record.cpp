// File: fuzz/fuzz_redis_record.cpp
//
// libFuzzer target for the Redis store's record readers: the packed record
// codec (src/stores/redis/record_codec.h) and, for a value starting with '{',
// the JSON records (json_layout.h: the original Python module's and
// layout=json), which read whatever a Redis key holds.
// Beyond "does not crash" it checks:
//   - a rejection is kCorrupt and names the key;
//   - a decoded record that can be written again (format 2, or Idem's JSON
//     layout) decodes back to the same record (encode is the inverse of decode);
//   - a format-2 or Idem JSON record states its own expiry; format 1 and a
//     legacy JSON record need the one given.
//
// Input: byte 0 bit 0 gives an expiry (PEXPIRETIME) to the decoder; byte 1 is
// the key's length; then the key; the rest is the value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stores/redis/json_layout.h"
#include "stores/redis/record_codec.h"

namespace {

[[noreturn]] void fail(const char* what, std::string_view key, std::string_view value) {
  std::fprintf(stderr, "fuzz_redis_record: %s\nkey: %.*s\nvalue: %.*s\n", what, static_cast<int>(key.size()),
               key.data(), static_cast<int>(value.size()), value.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool with_expiry = (data[0] & 1U) != 0;
  const std::size_t key_size = std::min<std::size_t>(data[1], size - 2);
  const std::string_view key(reinterpret_cast<const char*>(data + 2), key_size);
  const std::string_view value(reinterpret_cast<const char*>(data + 2 + key_size), size - 2 - key_size);
  std::optional<long long> expiry;
  if (with_expiry) expiry = 1'800'000'000'000;

  auto decoded = idem::redis_detail::decode_record(key, value, expiry);
  if (!decoded) {
    if (decoded.error().code() != idem::ErrorCode::kCorrupt) fail("rejection is not kCorrupt", key, value);
    if (decoded.error().message().find(key) == std::string::npos) fail("rejection does not name the key", key, value);
    return 0;
  }
  if (decoded->json) {
    if (decoded->legacy) {
      if (decoded->record.token != 0) fail("a legacy record has a token", key, value);
      if (decoded->expiry_known != with_expiry) fail("legacy expiry known without PEXPIRETIME", key, value);
      return 0;
    }
    if (!decoded->expiry_known) fail("an Idem JSON record does not state its expiry", key, value);
    std::optional<std::string> again = idem::redis_detail::encode_json_record(key, decoded->record);
    if (!again) return 0;  // e.g. an event id that is not UTF-8 cannot be written again
    auto back = idem::redis_detail::decode_record(key, *again, std::nullopt);
    if (!back) fail("an encoded JSON record does not decode", key, *again);
    if (back->record != decoded->record) fail("decode(encode_json(record)) != record", key, *again);
    return 0;
  }
  if (!decoded->expiry_known && with_expiry) fail("expiry unknown although it was given", key, value);
  if (decoded->record.idempotency_key != key) fail("the record does not carry its key", key, value);
  if (!decoded->expiry_known) return 0;
  std::optional<std::string> again = idem::redis_detail::encode_record(key, decoded->record);
  if (!again) return 0;  // e.g. a format-1 record whose first-seen time is after its token
  auto back = idem::redis_detail::decode_record(key, *again, std::nullopt);
  if (!back) fail("an encoded record does not decode", key, *again);
  if (!back->expiry_known) fail("an encoded record does not state its expiry", key, *again);
  if (back->record != decoded->record) fail("decode(encode(record)) != record", key, *again);
  return 0;
}
