// File: fuzz/fuzz_http_response.cpp
//
// libFuzzer target for what idem::http reads back or canonicalizes:
//   * StoredResponse::decode() of arbitrary text (a record's result may have
//     been written by another entry point, another version, or by hand): a
//     typed kCorrupt or a response that re-encodes to itself;
//   * StoredResponse::encode() of arbitrary status, headers and body bytes:
//     decode() gives back exactly what was encoded;
//   * fingerprint() of arbitrary JSON-typed bodies: no crash, deterministic.
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
  std::fprintf(stderr, "fuzz_http_response: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  switch (provider.ConsumeIntegralInRange<int>(0, 2)) {
    case 0: {
      const std::string text = provider.ConsumeRemainingBytesAsString();
      auto decoded = idem::http::StoredResponse::decode(text);
      if (!decoded) {
        if (decoded.error().code() != idem::ErrorCode::kCorrupt) fail("decode error is not kCorrupt");
        return 0;
      }
      auto again = idem::http::StoredResponse::decode(decoded->encode());
      if (!again || again->status != decoded->status || again->headers != decoded->headers ||
          again->body != decoded->body) {
        fail("a decoded response does not survive encode + decode");
      }
      return 0;
    }
    case 1: {
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
      return 0;
    }
    default: {
      httplib::Request request;
      request.method = "POST";
      request.path = "/payments";
      request.set_header("Content-Type", "application/json");
      request.body = provider.ConsumeRemainingBytesAsString();
      const idem::http::FingerprintOptions options{.ignore_json_fields = {"/a", "/a/0", "/0", "/a~1b/c"}};
      if (idem::http::fingerprint(request, options) != idem::http::fingerprint(request, options)) {
        fail("fingerprint is not deterministic");
      }
      return 0;
    }
  }
}
