// File: fuzz/fuzz_http.cpp
//
// libFuzzer target for everything idem::http reads from outside. The last
// input byte picks what is fuzzed:
//
//  0  parse_idempotency_key(), the parser of the header every client
//     controls. An accepted key is 1..max_length bytes of visible ASCII or
//     spaces; a rejection is kInvalidArgument with a message; quoting is
//     transparent (the sf-string form of an accepted key parses back to the
//     same key, so `"abc"` and `abc` are one key); surrounding spaces and tabs
//     never change the result.
//  1  StoredResponse::decode() of arbitrary text (a record's result may have
//     been written by another entry point, another version, or by hand): a
//     typed kCorrupt, or a response that re-encodes to itself.
//  2  StoredResponse::encode() of arbitrary status, headers and body bytes:
//     decode() gives back exactly what was encoded, and the text has no NUL.
//  3  fingerprint() of arbitrary JSON-typed bodies: no crash, deterministic.
//
// One target rather than one per parser keeps the fuzz stage of CI short;
// each mode is small enough for its share of the time.
#include <fuzzer/FuzzedDataProvider.h>
#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idem/integrations/http.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_http: %s\n", what);
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

void fuzz_key(FuzzedDataProvider& provider) {
  const std::size_t max_length = provider.ConsumeIntegralInRange<std::size_t>(0, 300);
  const std::string value = provider.ConsumeRemainingBytesAsString();
  auto key = idem::http::parse_idempotency_key(value, max_length);
  auto padded = idem::http::parse_idempotency_key(" \t" + value + "\t ", max_length);
  if (key.ok() != padded.ok() || (key.ok() && *key != *padded)) fail("surrounding whitespace changed the result");
  if (!key) {
    if (key.error().code() != idem::ErrorCode::kInvalidArgument) fail("rejection is not kInvalidArgument");
    if (key.error().message().empty()) fail("rejection without a message");
    return;
  }
  if (key->empty()) fail("accepted an empty key");
  if (max_length != 0 && key->size() > max_length) fail("accepted a key above the limit");
  for (const char c : *key) {
    if (c < 0x20 || c > 0x7e) fail("accepted a byte outside visible ASCII and space");
  }
  auto quoted = idem::http::parse_idempotency_key(sf_string(*key), max_length);
  if (!quoted || *quoted != *key) fail("the quoted form of an accepted key is not the same key");
}

void fuzz_decode(FuzzedDataProvider& provider) {
  const std::string text = provider.ConsumeRemainingBytesAsString();
  auto decoded = idem::http::StoredResponse::decode(text);
  if (!decoded) {
    if (decoded.error().code() != idem::ErrorCode::kCorrupt) fail("decode error is not kCorrupt");
    return;
  }
  auto again = idem::http::StoredResponse::decode(decoded->encode());
  if (!again || again->status != decoded->status || again->headers != decoded->headers ||
      again->body != decoded->body) {
    fail("a decoded response does not survive encode + decode");
  }
}

void fuzz_encode(FuzzedDataProvider& provider) {
  idem::http::StoredResponse in;
  in.status = provider.ConsumeIntegralInRange<int>(100, 999);
  const int headers = provider.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < headers; ++i) {
    std::string name = provider.ConsumeRandomLengthString(20);
    if (name.empty()) name = "X";
    in.headers.emplace_back(std::move(name), provider.ConsumeRandomLengthString(40));
  }
  in.body = provider.ConsumeRemainingBytesAsString();
  const std::string text = in.encode();
  if (text.find('\0') != std::string::npos) fail("the encoding holds a NUL byte");
  auto out = idem::http::StoredResponse::decode(text);
  if (!out || out->status != in.status || out->headers != in.headers || out->body != in.body) {
    fail("encode + decode is not exact");
  }
}

void fuzz_fingerprint(FuzzedDataProvider& provider) {
  httplib::Request request;
  request.method = "POST";
  request.path = "/payments";
  request.set_header("Content-Type", "application/json");
  request.body = provider.ConsumeRemainingBytesAsString();
  const idem::http::FingerprintOptions options{.ignore_json_fields = {"/a", "/a/0", "/0", "/a~1b/c"}};
  if (idem::http::fingerprint(request, options) != idem::http::fingerprint(request, options)) {
    fail("fingerprint is not deterministic");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  switch (provider.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: fuzz_key(provider); break;
    case 1: fuzz_decode(provider); break;
    case 2: fuzz_encode(provider); break;
    default: fuzz_fingerprint(provider); break;
  }
  return 0;
}
