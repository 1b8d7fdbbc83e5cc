// File: fuzz/fuzz_http_key.cpp
//
// libFuzzer target for idem::http::parse_idempotency_key, the parser of the
// Idempotency-Key header every client controls. Beyond "does not crash" it
// checks the contract:
//   * an accepted key is 1..max_length bytes of visible ASCII or spaces;
//   * a rejection is kInvalidArgument;
//   * quoting is transparent: the sf-string serialization of an accepted key
//     parses back to the same key, so `"abc"` and `abc` are one key;
//   * surrounding spaces and tabs never change the result.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idem/integrations/http.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& value) {
  std::fprintf(stderr, "fuzz_http_key: %s (field value of %zu bytes)\n", what, value.size());
  std::abort();
}

std::string sf_string(const std::string& key) {
  std::string out = "\"";
  for (const char c : key) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  const std::size_t max_length = provider.ConsumeIntegralInRange<std::size_t>(0, 300);
  const std::string value = provider.ConsumeRemainingBytesAsString();

  auto key = idem::http::parse_idempotency_key(value, max_length);
  auto padded = idem::http::parse_idempotency_key(" \t" + value + "\t ", max_length);
  if (key.ok() != padded.ok() || (key.ok() && *key != *padded))
    fail("surrounding whitespace changed the result", value);
  if (!key) {
    if (key.error().code() != idem::ErrorCode::kInvalidArgument) fail("rejection is not kInvalidArgument", value);
    if (key.error().message().empty()) fail("rejection without a message", value);
    return 0;
  }
  if (key->empty()) fail("accepted an empty key", value);
  if (max_length != 0 && key->size() > max_length) fail("accepted a key above the limit", value);
  for (const char c : *key) {
    if (c < 0x20 || c > 0x7e) fail("accepted a byte outside visible ASCII and space", value);
  }
  auto quoted = idem::http::parse_idempotency_key(sf_string(*key), max_length);
  if (!quoted || *quoted != *key) fail("the quoted form of an accepted key is not the same key", value);
  return 0;
}
