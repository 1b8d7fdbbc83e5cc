// File: fuzz/fuzz_key.cpp
//
// libFuzzer target for idem::build_key. The key decides which records
// collide, so beyond "does not crash" it checks the exact contract:
//   key = prefix + (scope + ":" when a scope is set) + (raw key, or its
//   64-character SHA-256 hex when hash_keys is set);
// and that a key is rejected exactly when it is empty, contains a NUL, or is
// longer than max_key_length without hashing.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idem/core/envelope.h"
#include "idem/core/error.h"
#include "idem/core/key.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& key) {
  std::fprintf(stderr, "fuzz_key: %s (key of %zu bytes)\n", what, key.size());
  std::abort();
}

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  idem::KeyOptions options;
  options.hash_keys = provider.ConsumeBool();
  options.max_key_length = provider.ConsumeIntegralInRange<std::size_t>(0, 600);
  if (provider.ConsumeBool()) options.prefix = provider.ConsumeRandomLengthString(40);
  options.scope = provider.ConsumeRandomLengthString(40);
  const bool through_envelope = provider.ConsumeBool();
  const std::string raw = provider.ConsumeRemainingBytesAsString();

  idem::Result<std::string> key = std::string();
  if (through_envelope) {
    // The envelope overload: the idempotency key wins over the event id.
    idem::Envelope envelope;
    envelope.event_id = "event-id-not-used";
    envelope.idempotency_key = raw;
    key = idem::build_key(envelope, options);
  } else {
    key = idem::build_key(raw, options);
  }

  const bool must_reject = raw.empty() || raw.find('\0') != std::string::npos ||
                           (!options.hash_keys && options.max_key_length != 0 && raw.size() > options.max_key_length);
  if (!key) {
    if (!must_reject) fail("rejected a valid key", raw);
    if (key.error().code() != idem::ErrorCode::kInvalidArgument) fail("rejection is not kInvalidArgument", raw);
    return 0;
  }
  if (must_reject) fail("accepted an invalid key", raw);

  std::string expected = options.prefix;
  if (!options.scope.empty()) expected += options.scope + ":";
  if (!starts_with(*key, expected)) fail("key does not start with prefix + scope", raw);
  const std::string tail = key->substr(expected.size());
  if (options.hash_keys) {
    if (tail != idem::sha256_hex(raw)) fail("hashed key is not the SHA-256 hex of the raw key", raw);
  } else if (tail != raw) {
    fail("key does not end with the raw key", raw);
  }
  return 0;
}
