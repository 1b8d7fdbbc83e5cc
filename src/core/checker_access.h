// File: src/core/checker_access.h
//
// The guard's way into the checker's private, clock-reusing forms of
// claim() and complete() (see checker.h), without making them public API.
#pragma once

#include <chrono>

#include "idem/core/checker.h"

namespace idem::detail {

struct CheckerAccess {
  static Result<Claim> claim(const IdempotencyChecker& checker, const Envelope& envelope, const KeyOptions& key_options,
                             std::chrono::steady_clock::time_point* answered) {
    return checker.claim_impl(envelope, key_options, answered);
  }
  static Status complete(const IdempotencyChecker& checker, std::string_view key, Token token, std::string_view result,
                         std::chrono::steady_clock::time_point* answered) {
    return checker.complete_impl(key, token, result, answered);
  }
};

}  // namespace idem::detail
