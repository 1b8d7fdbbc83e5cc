/// @file idem/core/envelope.h
/// @brief Envelope: an event as Idem sees it, with its JSON form.
///
/// Envelope is an event as it travels between services. It is parsed from and
/// written to JSON; the JSON library stays out of this header so that users
/// who never touch JSON do not pay for it at compile time.
///
/// @code
/// auto env = idem::Envelope::parse(R"({"event_id":"e1","payload":{"a":1}})");
/// if (!env) return env.error();            // names the bad field
/// std::string key = env->effective_key();  // "e1": no idempotency_key given
/// @endcode
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "idem/core/error.h"

namespace idem {

/// An event: its identity, its payload, and optionally an explicit
/// idempotency key. Plain value; the JSON fields have the member names.
struct Envelope {
  std::string event_id{};     ///< Required, non-empty; the key when idempotency_key is unset.
  std::string event_type{};   ///< Optional; recorded with the claim and shown in logs and traces.
  std::string source{};       ///< Optional producer name; carried along, not interpreted.
  std::string occurred_at{};  ///< RFC 3339 when present, like "2026-11-28T07:49:58Z".
  /// The payload as JSON text, "{}" when absent. parse() and
  /// set_payload_json() store it canonical (object keys sorted, no
  /// whitespace); a payload assigned by hand may be spaced or ordered any
  /// way, because payload_fingerprint() canonicalizes it again.
  std::string payload = "{}";
  /// Free-form string attributes (JSON: an object of strings); carried
  /// along, not part of the key or the fingerprint.
  std::map<std::string, std::string> metadata{};
  /// The key to deduplicate on, when it is not the event id (such as the
  /// client's Idempotency-Key). parse() refuses an empty one.
  std::optional<std::string> idempotency_key{};

  /// Envelope::parse() reads a JSON object. Unknown fields are ignored (for
  /// forward compatibility); a missing or empty event_id, a wrong type or an
  /// invalid occurred_at is a kInvalidArgument error naming the field.
  static Result<Envelope> parse(std::string_view json);

  /// to_json() writes the envelope back; parse(to_json()) round-trips.
  std::string to_json() const;

  /// effective_key() is idempotency_key when set, otherwise event_id: the
  /// behaviour of the original design, where the event id was the key.
  const std::string& effective_key() const noexcept { return idempotency_key ? *idempotency_key : event_id; }

  /// payload_fingerprint() is the hex SHA-256 (first 128 bits) of the
  /// canonical form of `payload` (keys sorted, no whitespace), however the
  /// payload was set: equal JSON gives equal fingerprints. Text that is not
  /// JSON is hashed as written.
  ///
  /// @code
  /// a.payload = R"({ "b": 2, "a": 1 })";
  /// b.payload = R"({"a":1,"b":2})";
  /// assert(a.payload_fingerprint() == b.payload_fingerprint());
  /// @endcode
  std::string payload_fingerprint() const;

  /// Sets the payload from JSON text, canonicalizing it. Fails unless the
  /// text is a JSON object.
  Status set_payload_json(std::string_view json);
};

/// True when `text` is an RFC 3339 date-time such as
/// "2026-11-28T07:49:58.123+01:00" (the check parse() applies to occurred_at).
bool is_rfc3339(std::string_view text) noexcept;

/// The SHA-256 of `data` as 64 lower-case hex characters (what
/// KeyOptions::hash_keys stores instead of a key).
std::string sha256_hex(std::string_view data);

}  // namespace idem
