// File: fuzz/fuzz_postgres.cpp
//
// libFuzzer target for what the PostgreSQL store reads from outside: its URL
// (IDEM_STORE_URL) and the rows the server sends back. Nothing connects.
// The first byte picks the parser:
//   0  PostgresStore::parse_url and redact_url, with a known password placed
//      in the user info (bit 4 of byte 0) or in a password= query key (bit 5):
//      a rejection is kInvalidConfiguration with a message, no message and no
//      redacted URL contains the password, an accepted URL keeps it exactly;
//   1  decode_record / decode_claim_row on fields cut from the input (a
//      length byte, 0xff for NULL, then the bytes): a value or kCorrupt,
//      never a crash, and a decoded record has a known status;
//   2  prefix_upper_bound: the bound is above the prefix, valid UTF-8, and
//      no string starting with the prefix reaches it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "idem/stores/postgres.h"
#include "stores/postgres/codec.h"
#include "stores/postgres/sql.h"

namespace {

constexpr std::string_view kSecret = "pw-Zq81-fuzz-secret";

[[noreturn]] void fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "fuzz_postgres: %s\ninput: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

void fuzz_url(std::uint8_t flags, std::string_view rest) {
  const bool user_secret = (flags & 0x10U) != 0;
  const bool query_secret = (flags & 0x20U) != 0;
  std::string url =
      user_secret ? "postgresql://app:" + std::string(kSecret) + "@" + std::string(rest) : std::string(rest);
  if (query_secret) {
    url += url.find('?') == std::string::npos ? '?' : '&';
    url += "password=" + std::string(kSecret);
  }
  // The fuzzer may copy the secret into the rest of the URL; echoing that
  // part is no leak.
  const bool secret_placed = (user_secret || query_secret) && rest.find(kSecret) == std::string_view::npos;
  const std::string redacted = idem::PostgresStore::redact_url(url);
  if (secret_placed && redacted.find(kSecret) != std::string::npos) fail("redact_url kept the password", url);
  auto parsed = idem::PostgresStore::parse_url(url);
  if (!parsed) {
    if (parsed.error().code() != idem::ErrorCode::kInvalidConfiguration) {
      fail("rejection is not kInvalidConfiguration", url);
    }
    if (parsed.error().message().empty()) fail("rejection without a message", url);
    if (secret_placed && parsed.error().message().find(kSecret) != std::string::npos) {
      fail("the error message contains the password", url);
    }
    return;
  }
  if (!parsed->validate()) fail("parse_url accepted options that validate() rejects", url);
  const bool simple_user_info = rest.find_first_of("@/?#%") == std::string_view::npos;
  if (user_secret && !query_secret && simple_user_info && parsed->password != kSecret) {
    fail("the password was not kept as given", url);
  }
}

void fuzz_row(std::string_view rest) {
  std::vector<idem::pg::Field> fields;
  std::size_t i = 0;
  while (i < rest.size() && fields.size() < idem::postgres_sql::kClaimColumns) {
    const auto len = static_cast<unsigned char>(rest[i++]);
    idem::pg::Field f;
    if (len != 0xff) {
      const std::size_t n = std::min<std::size_t>(len, rest.size() - i);
      f.null = false;
      f.bytes = rest.substr(i, n);
      i += n;
    }
    fields.push_back(f);
  }
  auto record = idem::pg::decode_record(fields);
  if (!record) {
    if (record.error().code() != idem::ErrorCode::kCorrupt) fail("a bad record is not kCorrupt", rest);
  } else if (idem::parse_status(idem::to_string(record->status)) != record->status) {
    fail("decoded an unknown status", rest);
  }
  auto row = idem::pg::decode_claim_row(fields);
  if (!row && row.error().code() != idem::ErrorCode::kCorrupt) fail("a bad claim row is not kCorrupt", rest);
}

void fuzz_prefix(std::string_view prefix) {
  const std::optional<std::string> upper = idem::pg::prefix_upper_bound(prefix);
  if (!upper) return;
  if (!idem::pg::valid_utf8(prefix)) fail("a bound for a prefix that is not UTF-8", prefix);
  if (!idem::pg::valid_utf8(*upper)) fail("the bound is not valid UTF-8", prefix);
  if (!(std::string_view(*upper) > prefix)) fail("the bound is not above the prefix", prefix);
  if (upper->starts_with(prefix)) fail("the bound starts with the prefix", prefix);
  // The largest string with this prefix that a key can hold sorts below it.
  const std::string far = std::string(prefix) + "\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf";
  if (!(std::string_view(far) < std::string_view(*upper))) fail("a string with the prefix reaches the bound", prefix);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] & 0x0fU) {
    case 0: fuzz_url(data[0], rest); break;
    case 1: fuzz_row(rest); break;
    case 2: fuzz_prefix(rest); break;
    default: break;
  }
  return 0;
}
