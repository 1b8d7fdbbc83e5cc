// File: fuzz/fuzz_redis_url.cpp
//
// libFuzzer target for idem::RedisStore::parse_url, which reads
// IDEM_STORE_URL for the Redis stores. It only parses: nothing connects.
// Beyond "does not crash" it checks:
//   - a rejection is kInvalidConfiguration with a message;
//   - the mode and TLS flag follow the scheme;
//   - credentials never leak: with a password in the URL (user info or
//     sentinel_password), no error message contains it, and a parsed URL
//     carries exactly the user and password given.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "idem/core/error.h"
#include "idem/stores/redis.h"

namespace {

// Never produced by the parser itself, so finding it in a message means the
// password was echoed.
constexpr std::string_view kSecret = "pw-7Qx2-fuzz-secret";

[[noreturn]] void fail(const char* what, const std::string& url) {
  std::fprintf(stderr, "fuzz_redis_url: %s\nurl: %s\n", what, url.c_str());
  std::abort();
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

idem::RedisMode expected_mode(std::string_view url) {
  if (starts_with(url, "redis+sentinel://") || starts_with(url, "rediss+sentinel://")) {
    return idem::RedisMode::kSentinel;
  }
  if (starts_with(url, "redis+cluster://") || starts_with(url, "rediss+cluster://")) return idem::RedisMode::kCluster;
  return idem::RedisMode::kStandalone;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  // The first byte decides where a known password goes, so that the fuzzer
  // explores the rest of the URL around it: bit 0 puts credentials in front
  // (redis://user:<secret>@...), bit 1 appends sentinel_password=<secret>.
  const bool user_secret = (data[0] & 1U) != 0;
  const bool sentinel_secret = (data[0] & 2U) != 0;
  std::string url = user_secret ? "redis://user:" + std::string(kSecret) + "@" + std::string(rest) : std::string(rest);
  if (sentinel_secret) {
    url += url.find('?') == std::string::npos ? '?' : '&';
    url += "sentinel_password=" + std::string(kSecret);
  }
  // The fuzzer learns the secret from comparisons and may copy it into the
  // rest of the URL; an echo of that part is no leak.
  const bool with_secret = (user_secret || sentinel_secret) && rest.find(kSecret) == std::string_view::npos;

  auto parsed = idem::RedisStore::parse_url(url);
  if (!parsed) {
    if (parsed.error().code() != idem::ErrorCode::kInvalidConfiguration) {
      fail("rejection is not kInvalidConfiguration", url);
    }
    if (parsed.error().message().empty()) fail("rejection without a message", url);
    if (with_secret && parsed.error().message().find(kSecret) != std::string::npos) {
      fail("the error message contains the password", url);
    }
    return 0;
  }
  const idem::RedisStoreOptions& options = *parsed;
  if (options.endpoints.empty()) fail("accepted a URL without an endpoint", url);

  const bool tls = starts_with(url, "rediss");
  if (options.mode != expected_mode(url)) fail("the mode does not follow the scheme", url);
  // The query may say tls=0|1 explicitly; without it the scheme decides.
  if (url.find("tls=") == std::string::npos && options.tls.enabled != tls) fail("TLS does not follow the scheme", url);

  if (user_secret && rest.find('@') == std::string_view::npos && rest.find(kSecret) == std::string_view::npos) {
    if (options.username != "user" || options.password != kSecret) fail("credentials were not kept as given", url);
  }
  (void)options.validate();  // must not crash on anything parse_url accepted
  return 0;
}
