// File: src/core/duration_check.h
//
// The one range check behind every duration bound (limits.h): options
// report kInvalidConfiguration, store requests kInvalidArgument, both with
// the same message naming the field, its value and the allowed range.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "idem/core/error.h"

namespace idem::detail {

inline Status check_duration(std::string_view field, std::chrono::milliseconds value, std::chrono::milliseconds min,
                             std::chrono::milliseconds max, ErrorCode code) {
  if (value >= min && value <= max) return {};
  return Error(code, std::string(field) + " is " + std::to_string(value.count()) + " ms; it must be between " +
                         std::to_string(min.count()) + " ms and " + std::to_string(max.count()) + " ms");
}

}  // namespace idem::detail
