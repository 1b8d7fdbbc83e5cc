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
  static const std::array<Script, kScriptCount> all = [] {
    // By name, so that the order of ScriptId cannot silently swap two.
    std::array<Script, kScriptCount> a;
    a[kClaim] = with_prelude(kClaimScript);
    a[kFinish] = plain(kFinishScript);
    a[kSwap] = plain(kSwapScript);
    a[kExtend] = with_prelude(kExtendScript);
    a[kCheckpoint] = with_prelude(kCheckpointScript);
    a[kGet] = plain(kGetScript);
    a[kWatch] = with_prelude(kWatchScript);
    a[kJsonOwner] = plain(kJsonOwnerScript);
    return a;
  }();
  return all;
}

}  // namespace idem::redis_detail
