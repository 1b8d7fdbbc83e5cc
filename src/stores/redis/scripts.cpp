// The scripts' bodies and SHA-1s; see scripts.h.
#include "stores/redis/scripts.h"

#include <openssl/sha.h>

namespace idem::redis_detail {
namespace {

std::string sha1_hex(std::string_view text) {
  std::array<unsigned char, SHA_DIGEST_LENGTH> md{};
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : md) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Script with_prelude(std::string_view body) {
  std::string full(kPrelude);
  full.append(body);
  std::string sha = sha1_hex(full);
  return Script{std::move(full), std::move(sha)};
}

// A script that needs none of the prelude's helpers.
Script plain(std::string_view body) { return Script{std::string(body), sha1_hex(body)}; }

}  // namespace

const std::array<Script, kScriptCount>& scripts() {
  static const std::array<Script, kScriptCount> all{with_prelude(kClaimScript),  plain(kFinishScript),
                                                    with_prelude(kExtendScript), with_prelude(kCheckpointScript),
                                                    plain(kGetScript),           with_prelude(kWatchScript)};
  return all;
}

}  // namespace idem::redis_detail
