// File: src/core/url_query.h
//
// The query part of a store URL ("?a=1&b=2"), split once for every store
// that parses its own URL, so that all of them treat empty items, missing
// values and numbers alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"

namespace idem::detail {

struct QueryParam {
  std::string_view name;
  std::string_view value;
};

// Splits "a=1&b=2" into its parameters, in order; empty items are skipped.
// An item without '=' is an error whose message names it.
Result<std::vector<QueryParam>> split_url_query(std::string_view query);

// The whole of `text` as a decimal unsigned integer, or nullopt.
std::optional<std::uint64_t> parse_unsigned(std::string_view text) noexcept;

// `text` with its %XX escapes decoded, or nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace idem::detail
