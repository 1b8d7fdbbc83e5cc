// fingerprint(): what makes two requests "the same request" for one key.
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "idem/core/envelope.h"
#include "idem/integrations/http.h"
#include "integrations/http/internal.h"

namespace idem::http {
namespace {

using Json = nlohmann::json;

// Real request bodies are shallow; a deeper one is compared byte for byte
// rather than parsed (dump() recurses).
constexpr int kMaxJsonDepth = 64;

struct TooDeep {};

// Length-prefixed, so that no choice of field contents can make two
// different requests produce the same material.
void append_field(std::string& material, std::string_view field) {
  material += std::to_string(field.size());
  material += ':';
  material += field;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_json_media_type(std::string_view content_type) {
  std::string media = lower(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.pop_back();
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.erase(media.begin());
  return media == "application/json" || (media.size() > 5 && media.ends_with("+json"));
}

std::optional<Json> parse_bounded(std::string_view text) {
  Json::parser_callback_t limit_depth = [](int depth, Json::parse_event_t /*event*/, Json& /*value*/) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    return true;
  };
  try {
    Json doc = Json::parse(text.begin(), text.end(), limit_depth, false);
    if (doc.is_discarded()) return std::nullopt;
    return doc;
  } catch (const TooDeep&) {
    return std::nullopt;
  }
}

void remove_pointer(Json& doc, const Json::json_pointer& pointer) {
  if (pointer.empty()) return;
  try {
    const Json::json_pointer parent = pointer.parent_pointer();
    if (!doc.contains(parent)) return;
    Json& container = doc.at(parent);
    // Only object members: removing an array element would shift the others
    // and make different lists look equal.
    if (container.is_object()) container.erase(pointer.back());
  } catch (const Json::exception&) {
    // A pointer that does not fit this document (an index into an object,
    // a name into an array) names nothing to ignore.
  }
}

std::string canonical_body(const httplib::Request& request, const std::vector<Json::json_pointer>& ignored) {
  if (is_json_media_type(request.get_header_value("Content-Type"))) {
    if (auto doc = parse_bounded(request.body)) {
      for (const auto& pointer : ignored) remove_pointer(*doc, pointer);
      // error_handler replace: invalid UTF-8 in strings must not throw; the
      // result only has to be deterministic.
      return "json:" + doc->dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  return "raw:" + request.body;
}

}  // namespace

namespace detail {

Result<std::vector<nlohmann::json::json_pointer>> parse_pointers(const std::vector<std::string>& pointers) {
  std::vector<Json::json_pointer> out;
  out.reserve(pointers.size());
  for (const std::string& text : pointers) {
    try {
      out.emplace_back(text);
    } catch (const Json::exception&) {
      return Error(ErrorCode::kInvalidConfiguration,
                   "ignore_json_fields: '" + text + "' is not a JSON Pointer (RFC 6901, e.g. \"/metadata/sent_at\")");
    }
  }
  return out;
}

std::string fingerprint(const httplib::Request& request, const FingerprintOptions& options,
                        const std::vector<nlohmann::json::json_pointer>& ignored) {
  std::string material;
  append_field(material, "idem-http-1");
  append_field(material, request.method);
  append_field(material, request.path);
  if (options.custom) {
    append_field(material, options.custom(request));
    return sha256_hex(material);
  }
  if (options.include_query) {
    std::vector<std::pair<std::string, std::string>> params(request.params.begin(), request.params.end());
    std::sort(params.begin(), params.end());
    append_field(material, std::to_string(params.size()));
    for (const auto& [name, value] : params) {
      append_field(material, name);
      append_field(material, value);
    }
  }
  for (const std::string& name : options.include_headers) {
    const std::size_t count = request.get_header_value_count(name);
    append_field(material, lower(name));
    append_field(material, std::to_string(count));
    for (std::size_t i = 0; i < count; ++i) append_field(material, request.get_header_value(name, i));
  }
  append_field(material, canonical_body(request, ignored));
  return sha256_hex(material);
}

}  // namespace detail

std::string fingerprint(const httplib::Request& request, const FingerprintOptions& options) {
  return detail::fingerprint(request, options, detail::parse_pointers(options.ignore_json_fields).value());
}

}  // namespace idem::http
