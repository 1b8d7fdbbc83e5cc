#include "core/url_query.h"

#include <charconv>

namespace idem::detail {

Result<std::vector<QueryParam>> split_url_query(std::string_view query) {
  std::vector<QueryParam> params;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Error(ErrorCode::kInvalidConfiguration, "query parameter '" + std::string(item) + "' has no value");
    }
    params.push_back({item.substr(0, eq), item.substr(eq + 1)});
  }
  return params;
}

std::optional<std::uint64_t> parse_unsigned(std::string_view text) noexcept {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace idem::detail
