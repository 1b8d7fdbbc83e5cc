// parse_idempotency_key(): the value of one Idempotency-Key field.
#include <string>

#include "idem/integrations/http.h"

namespace idem::http {
namespace {

Error invalid(std::string message) { return {ErrorCode::kInvalidArgument, std::move(message)}; }

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
bool is_visible_or_space(char c) noexcept { return c >= 0x20 && c <= 0x7e; }

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  return text;
}

// An RFC 8941 sf-string whose opening quote is text[0]: the unescaped value.
Result<std::string> parse_sf_string(std::string_view text) {
  std::string out;
  std::size_t i = 1;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') break;
    if (c == '\\') {
      if (i + 1 >= text.size() || (text[i + 1] != '"' && text[i + 1] != '\\')) {
        return invalid("the quoted key has a backslash that escapes neither '\"' nor '\\'");
      }
      out.push_back(text[++i]);
      continue;
    }
    if (!is_visible_or_space(c)) {
      return invalid("the key may hold only visible ASCII characters and spaces");
    }
    out.push_back(c);
  }
  if (i >= text.size()) return invalid("the quoted key has no closing '\"'");
  if (i + 1 != text.size()) {
    return invalid("unexpected characters after the quoted key (send one key per request, without parameters)");
  }
  return out;
}

}  // namespace

Result<std::string> parse_idempotency_key(std::string_view field_value, std::size_t max_length) {
  const std::string_view text = trim(field_value);
  Result<std::string> key = std::string();
  if (!text.empty() && text.front() == '"') {
    key = parse_sf_string(text);
    if (!key) return key;
  } else {
    for (const char c : text) {
      if (!is_visible_or_space(c)) return invalid("the key may hold only visible ASCII characters and spaces");
    }
    key = std::string(text);
  }
  if (key->empty()) return invalid("the key is empty");
  if (max_length != 0 && key->size() > max_length) {
    return invalid("the key is " + std::to_string(key->size()) + " bytes long; the limit is " +
                   std::to_string(max_length));
  }
  return key;
}

}  // namespace idem::http
