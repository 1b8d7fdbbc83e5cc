// File: idem/core/envelope.h
//
// Envelope is an event as it travels between services. It is parsed from and
// written to JSON; the JSON library stays out of this header so that users
// who never touch JSON do not pay for it at compile time.
//
//   auto env = idem::Envelope::parse(R"({"event_id":"e1","payload":{"a":1}})");
//   if (!env) return env.error();          // names the bad field
//   std::string key = env->effective_key();  // "e1": no idempotency_key given
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "idem/core/error.h"

namespace idem {

struct Envelope {
  std::string event_id{};     // required, non-empty
  std::string event_type{};   // optional
  std::string source{};       // optional
  std::string occurred_at{};  // RFC 3339 when present, e.g. "2026-11-28T07:49:58Z"
  // The payload as JSON text, "{}" when absent. parse() and
  // set_payload_json() store it canonical (object keys sorted, no
  // whitespace); a payload assigned by hand may be spaced or ordered any
  // way, because payload_fingerprint() canonicalizes it again.
  std::string payload = "{}";
  std::map<std::string, std::string> metadata{};
  std::optional<std::string> idempotency_key{};

  // Envelope::parse() reads a JSON object. Unknown fields are ignored (for
  // forward compatibility); a missing or empty event_id, a wrong type or an
  // invalid occurred_at is an kInvalidArgument error naming the field.
  static Result<Envelope> parse(std::string_view json);

  // to_json() writes the envelope back; parse(to_json()) round-trips.
  std::string to_json() const;

  // effective_key() is idempotency_key when set, otherwise event_id: the
  // behaviour of the original design, where the event id was the key.
  const std::string& effective_key() const noexcept { return idempotency_key ? *idempotency_key : event_id; }

  // payload_fingerprint() is the hex SHA-256 (first 128 bits) of the
  // canonical form of `payload` (keys sorted, no whitespace), however the
  // payload was set: equal JSON gives equal fingerprints. Text that is not
  // JSON is hashed as written.
  //
  //   a.payload = R"({ "b": 2, "a": 1 })";  b.payload = R"({"a":1,"b":2})";
  //   assert(a.payload_fingerprint() == b.payload_fingerprint());
  std::string payload_fingerprint() const;

  // Sets the payload from JSON text, canonicalizing it. Fails unless the
  // text is a JSON object.
  Status set_payload_json(std::string_view json);
};

// Validates an RFC 3339 date-time ("2026-11-28T07:49:58.123+01:00").
bool is_rfc3339(std::string_view text) noexcept;

// Hex SHA-256 of `data` (64 characters).
std::string sha256_hex(std::string_view data);

}  // namespace idem
