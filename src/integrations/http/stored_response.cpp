// StoredResponse: the record's result for an HTTP key, as compact JSON.
//
//   {"http":1,"status":201,"headers":[["Content-Type","application/json"]],"body":"{...}"}
//
// Text that is not valid UTF-8, or holds NUL (which PostgreSQL text and jsonb
// refuse), is written as {"b64":"..."} instead of a JSON string.
#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <string>

#include "idem/integrations/http.h"

namespace idem::http {
namespace {

using Json = nlohmann::json;

constexpr int kFormatVersion = 1;

bool is_storable_text(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t code = 0;
    if ((c & 0xe0) == 0xc0) {
      length = 2;
      code = c & 0x1fU;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      code = c & 0x0fU;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      code = c & 0x07U;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6U) | (next & 0x3fU);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF.
    static constexpr std::uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[length] || (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) return false;
    i += length;
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int written =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(written));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (text.size() / 4), '\0');
  const int written =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(text.data()),
                      static_cast<int>(text.size()));
  if (written < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++padding;
  if (padding > static_cast<std::size_t>(written)) return std::nullopt;
  out.resize(static_cast<std::size_t>(written) - padding);
  return out;
}

Json text_value(std::string_view text) {
  if (is_storable_text(text)) return std::string(text);
  return Json{{"b64", base64_encode(text)}};
}

std::optional<std::string> read_text(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.size() == 1) {
    auto it = value.find("b64");
    if (it != value.end() && it->is_string()) return base64_decode(it->get_ref<const std::string&>());
  }
  return std::nullopt;
}

Error corrupt(std::string_view what) { return {ErrorCode::kCorrupt, "stored HTTP response: " + std::string(what)}; }

}  // namespace

std::string StoredResponse::encode() const {
  Json headers_json = Json::array();
  for (const auto& [name, value] : headers) headers_json.push_back(Json::array({text_value(name), text_value(value)}));
  Json doc{
      {"http", kFormatVersion}, {"status", status}, {"headers", std::move(headers_json)}, {"body", text_value(body)}};
  return doc.dump();
}

Result<StoredResponse> StoredResponse::decode(std::string_view text) {
  // Ours nests four levels deep; deeper values are dropped while parsing, so
  // hostile input cannot build a deep tree.
  Json::parser_callback_t shallow = [](int depth, Json::parse_event_t /*event*/, Json& /*value*/) {
    return depth <= 5;
  };
  Json doc = Json::parse(text.begin(), text.end(), shallow, false);
  if (doc.is_discarded() || !doc.is_object()) return corrupt("not a JSON object");
  auto version = doc.find("http");
  if (version == doc.end() || !version->is_number_integer() || version->get<int>() != kFormatVersion) {
    return corrupt("not written by the HTTP middleware (no \"http\": 1)");
  }
  StoredResponse out;
  auto status = doc.find("status");
  if (status == doc.end() || !status->is_number_integer()) return corrupt("no integer \"status\"");
  const auto code = status->get<std::int64_t>();
  if (code < 100 || code > 999) return corrupt("status out of range");
  out.status = static_cast<int>(code);
  auto headers = doc.find("headers");
  if (headers == doc.end() || !headers->is_array()) return corrupt("no \"headers\" array");
  for (const Json& header : *headers) {
    if (!header.is_array() || header.size() != 2) return corrupt("a header is not a [name, value] pair");
    auto name = read_text(header[0]);
    auto value = read_text(header[1]);
    if (!name || !value || name->empty()) return corrupt("a header name or value is unreadable");
    out.headers.emplace_back(std::move(*name), std::move(*value));
  }
  auto body = doc.find("body");
  if (body == doc.end()) return corrupt("no \"body\"");
  auto bytes = read_text(*body);
  if (!bytes) return corrupt("the body is unreadable");
  out.body = std::move(*bytes);
  return out;
}

}  // namespace idem::http
