#include "idem/core/key.h"

namespace idem {

Result<std::string> build_key(std::string_view idempotency_key, const KeyOptions& options) {
  if (idempotency_key.empty()) return Error(ErrorCode::kInvalidArgument, "idempotency key is empty");
  if (idempotency_key.find('\0') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument, "idempotency key contains a NUL byte");
  }
  std::string hashed;
  if (options.hash_keys) {
    // Hashing makes any length acceptable and keeps personal data out of the store.
    hashed = sha256_hex(idempotency_key);
    idempotency_key = hashed;
  } else if (options.max_key_length != 0 && idempotency_key.size() > options.max_key_length) {
    return Error(ErrorCode::kInvalidArgument,
                 "idempotency key is " + std::to_string(idempotency_key.size()) + " bytes, above the limit of " +
                     std::to_string(options.max_key_length) + " (raise KeyOptions::max_key_length or set hash_keys)");
  }
  std::string key;
  key.reserve(options.prefix.size() + options.scope.size() + 1 + idempotency_key.size());
  key += options.prefix;
  if (!options.scope.empty()) {
    key += options.scope;
    key += ':';
  }
  key += idempotency_key;
  return key;
}

Result<std::string> build_key(const Envelope& envelope, const KeyOptions& options) {
  if (options.extractor) {
    std::string extracted = options.extractor(envelope);
    if (extracted.empty()) {
      return Error(ErrorCode::kInvalidArgument,
                   "the key extractor returned an empty key for event '" + envelope.event_id + "'");
    }
    return build_key(std::string_view(extracted), options);
  }
  return build_key(std::string_view(envelope.effective_key()), options);
}

}  // namespace idem
