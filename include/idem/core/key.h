/// @file idem/core/key.h
///
/// How a store key is built from an envelope:
///   prefix + (scope + ":" if a scope is set) + idempotency key
/// The idempotency key may be replaced by its SHA-256 so that personal data in
/// keys (e-mail addresses, order numbers) never reaches the store.
///
///   idem::KeyOptions opts{.scope = "billing"};
///   auto key = idem::build_key(envelope, opts);  // "idempotency:events:billing:e1"
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "idem/core/envelope.h"
#include "idem/core/error.h"

namespace idem {

inline constexpr std::string_view kDefaultKeyPrefix = "idempotency:events:";

/// KeyExtractor returns the idempotency key of an envelope. Return an empty
/// string to mean "this envelope has no usable key" (an error is reported).
using KeyExtractor = std::function<std::string(const Envelope&)>;

struct KeyOptions {
  std::string prefix = std::string(kDefaultKeyPrefix);
  /// Scope separates handlers: two handlers with different scopes each process
  /// the same event once. Empty means no scope.
  std::string scope{};
  /// Longest accepted idempotency key (before prefix and scope), in bytes.
  /// Longer keys are rejected unless hash_keys is set. 0 means no limit.
  std::size_t max_key_length = 512;
  /// Store SHA-256(key) in hex instead of the key itself.
  bool hash_keys = false;
  /// Replaces Envelope::effective_key() when set.
  KeyExtractor extractor{};
};

/// build_key() returns the full store key for a raw idempotency key, or an
/// kInvalidArgument error when the key is empty, too long, or contains a NUL.
Result<std::string> build_key(std::string_view idempotency_key, const KeyOptions& options);

/// build_key() for an envelope: applies the extractor, then the rules above.
Result<std::string> build_key(const Envelope& envelope, const KeyOptions& options);

}  // namespace idem
