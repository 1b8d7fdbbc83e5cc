#include "idem/core/envelope.h"

#include <array>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/fingerprint.h"

namespace idem {
namespace {

using Json = nlohmann::json;

// Deep nesting would make serialization recurse without bound; real events
// are shallow, so anything deeper is treated as hostile.
constexpr int kMaxNestingDepth = 64;

struct TooDeep {};

Error invalid(std::string message) { return {ErrorCode::kInvalidArgument, std::move(message)}; }

// Parses with a depth bound. Throws nlohmann's parse_error or TooDeep.
Json parse_bounded(std::string_view text) {
  Json::parser_callback_t limit_depth = [](int depth, Json::parse_event_t /*event*/, Json& /*value*/) {
    if (depth > kMaxNestingDepth) throw TooDeep{};
    return true;
  };
  return Json::parse(text.begin(), text.end(), limit_depth);
}

Result<std::optional<std::string>> optional_string(const Json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return invalid(std::string("field '") + field + "' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

bool digits(std::string_view text, std::size_t pos, std::size_t count) {
  if (pos + count > text.size()) return false;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (std::isdigit(static_cast<unsigned char>(text[i])) == 0) return false;
  }
  return true;
}

int number(std::string_view text, std::size_t pos, std::size_t count) {
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) value = value * 10 + (text[i] - '0');
  return value;
}

}  // namespace

bool is_rfc3339(std::string_view t) noexcept {
  // 2026-11-28T07:49:58[.frac](Z|+hh:mm|-hh:mm)
  if (!digits(t, 0, 4) || t.size() < 20 || t[4] != '-' || !digits(t, 5, 2) || t[7] != '-' || !digits(t, 8, 2)) {
    return false;
  }
  if (t[10] != 'T' && t[10] != 't' && t[10] != ' ') return false;
  if (!digits(t, 11, 2) || t[13] != ':' || !digits(t, 14, 2) || t[16] != ':' || !digits(t, 17, 2)) return false;
  const int month = number(t, 5, 2);
  const int day = number(t, 8, 2);
  if (month < 1 || month > 12 || day < 1 || day > 31) return false;
  if (number(t, 11, 2) > 23 || number(t, 14, 2) > 59 || number(t, 17, 2) > 60) return false;
  std::size_t pos = 19;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos])) != 0) ++pos;
    if (pos == start) return false;
  }
  if (pos >= t.size()) return false;
  if (t[pos] == 'Z' || t[pos] == 'z') return pos + 1 == t.size();
  if (t[pos] != '+' && t[pos] != '-') return false;
  if (!digits(t, pos + 1, 2) || pos + 3 >= t.size() || t[pos + 3] != ':' || !digits(t, pos + 4, 2)) return false;
  if (number(t, pos + 1, 2) > 23 || number(t, pos + 4, 2) > 59) return false;
  return pos + 6 == t.size();
}

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, 32> digest{};
  detail::sha256(data, digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(digest.size() * 2U);
  for (const unsigned char byte : digest) {
    hex.push_back(kHex[byte >> 4U]);
    hex.push_back(kHex[byte & 0x0FU]);
  }
  return hex;
}

std::string Envelope::payload_fingerprint() const {
  detail::FingerprintHex hex{};
  detail::payload_fingerprint(payload, hex);
  return {hex.data(), hex.size()};
}

Status Envelope::set_payload_json(std::string_view json) {
  try {
    Json value = parse_bounded(json);
    if (!value.is_object()) return invalid("field 'payload' must be a JSON object");
    payload = value.dump();
    return {};
  } catch (const TooDeep&) {
    return invalid("field 'payload' is nested deeper than 64 levels");
  } catch (const Json::exception& e) {
    return invalid(std::string("field 'payload' is not valid JSON: ") + e.what());
  }
}

Result<Envelope> Envelope::parse(std::string_view json) {
  Json root;
  try {
    root = parse_bounded(json);
  } catch (const TooDeep&) {
    return invalid("envelope is nested deeper than 64 levels");
  } catch (const Json::parse_error& e) {
    return invalid(std::string("envelope is not valid JSON (byte ") + std::to_string(e.byte) + ")");
  } catch (const Json::exception& e) {
    return invalid(std::string("envelope is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) return invalid("envelope must be a JSON object");

  Envelope envelope;
  auto event_id = root.find("event_id");
  if (event_id == root.end() || event_id->is_null()) return invalid("field 'event_id' is required");
  if (!event_id->is_string()) return invalid("field 'event_id' must be a string");
  envelope.event_id = event_id->get<std::string>();
  if (envelope.event_id.empty()) return invalid("field 'event_id' must not be empty");

  for (auto [field, target] : {std::pair{"event_type", &envelope.event_type}, std::pair{"source", &envelope.source},
                               std::pair{"occurred_at", &envelope.occurred_at}}) {
    auto value = optional_string(root, field);
    if (!value) return std::move(value).error();
    if (*value) *target = std::move(**value);
  }
  if (!envelope.occurred_at.empty() && !is_rfc3339(envelope.occurred_at)) {
    return invalid("field 'occurred_at' must be an RFC 3339 date-time, e.g. 2026-11-28T07:49:58Z");
  }

  auto key = optional_string(root, "idempotency_key");
  if (!key) return std::move(key).error();
  if (*key) {
    if ((*key)->empty()) return invalid("field 'idempotency_key' must not be empty when present");
    envelope.idempotency_key = std::move(**key);
  }

  if (auto payload = root.find("payload"); payload != root.end() && !payload->is_null()) {
    if (!payload->is_object()) return invalid("field 'payload' must be a JSON object");
    envelope.payload = payload->dump();
  }

  if (auto metadata = root.find("metadata"); metadata != root.end() && !metadata->is_null()) {
    if (!metadata->is_object()) return invalid("field 'metadata' must be an object of strings");
    for (const auto& [name, value] : metadata->items()) {
      if (!value.is_string()) return invalid("field 'metadata." + name + "' must be a string");
      envelope.metadata.emplace(name, value.get<std::string>());
    }
  }
  return envelope;
}

std::string Envelope::to_json() const {
  Json root = Json::object();
  root["event_id"] = event_id;
  if (!event_type.empty()) root["event_type"] = event_type;
  if (!source.empty()) root["source"] = source;
  if (!occurred_at.empty()) root["occurred_at"] = occurred_at;
  root["payload"] = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (root["payload"].is_discarded()) root["payload"] = Json::object();
  if (!metadata.empty()) root["metadata"] = metadata;
  if (idempotency_key) root["idempotency_key"] = *idempotency_key;
  // Replace rather than throw on invalid UTF-8: the envelope came from a
  // peer and must still be loggable and re-publishable.
  return root.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace idem
