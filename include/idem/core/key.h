/// @file idem/core/key.h
/// @brief How the store key of an event is built: prefix, scope, key, hashing.
///
/// A store key is
///
/// @code
/// prefix + (scope + ":" if a scope is set) + idempotency key
/// @endcode
///
/// The idempotency key may be replaced by its SHA-256 so that personal data in
/// keys (e-mail addresses, order numbers) never reaches the store.
///
/// @code
/// idem::KeyOptions opts{.scope = "billing"};
/// auto key = idem::build_key(envelope, opts);  // "idempotency:events:billing:e1"
/// @endcode
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "idem/core/envelope.h"
#include "idem/core/error.h"

namespace idem {

/// The default KeyOptions::prefix, the key layout of the original design.
inline constexpr std::string_view kDefaultKeyPrefix = "idempotency:events:";

/// KeyExtractor returns the idempotency key of an envelope. Return an empty
/// string to mean "this envelope has no usable key" (an error is reported).
using KeyExtractor = std::function<std::string(const Envelope&)>;

/// How build_key() turns an idempotency key into a store key.
struct KeyOptions {
  /// Prepended to every key; lets several applications share one store.
  /// May be empty.
  std::string prefix = std::string(kDefaultKeyPrefix);
  /// Scope separates handlers: two handlers with different scopes each process
  /// the same event once. Empty means no scope.
  std::string scope{};
  /// Longest accepted idempotency key (before prefix and scope), in bytes.
  /// Longer keys are rejected unless hash_keys is set. 0 means no limit.
  std::size_t max_key_length = 512;
  /// Store SHA-256(key) in hex instead of the key itself (any length is then
  /// accepted; scope and prefix stay readable).
  bool hash_keys = false;
  /// Replaces Envelope::effective_key() when set.
  KeyExtractor extractor{};
};

/// build_key() returns the full store key for a raw idempotency key, or a
/// kInvalidArgument error when the key is empty, too long, or contains a NUL.
Result<std::string> build_key(std::string_view idempotency_key, const KeyOptions& options);

/// build_key() for an envelope: the key is the extractor's answer (an empty
/// one is kInvalidArgument) or Envelope::effective_key(), then as above.
Result<std::string> build_key(const Envelope& envelope, const KeyOptions& options);

}  // namespace idem
