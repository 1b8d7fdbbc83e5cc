// File: src/integrations/nats/dead_letter.h
//
// The dead letter of a message: its headers (why, where from, how often
// delivered, plus the original headers) and its Nats-Msg-Id. Pure functions,
// fed with outside input (headers and payloads of any sender), so they are
// unit tested and fuzzed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "idem/integrations/nats.h"

namespace idem::nats::detail {

struct DeadLetterInput {
  DeadLetterReason reason = DeadLetterReason::kUndecodable;
  std::string_view detail{};
  std::string_view subject{};
  std::string_view stream{};
  std::uint64_t stream_sequence = 0;
  std::uint64_t delivery = 0;
  std::uint32_t attempt = 0;  // 0: no claim was made
  std::string_view key{};     // empty: unknown
  std::string_view event_id{};
  const Headers* original = nullptr;
};

// The longest Idem-Dead-Letter-Error value, and the longest other value;
// longer texts are cut.
inline constexpr std::size_t kMaxErrorHeaderBytes = 1024;
inline constexpr std::size_t kMaxHeaderValueBytes = 4096;

// header_value() makes text safe as a header value: control characters
// (CR and LF would end the header) become spaces, and it is cut at `max`
// bytes without splitting a UTF-8 sequence.
std::string header_value(std::string_view text, std::size_t max);

// valid_header_name(): printable ASCII without spaces or ':' (what can be
// written on a header line).
bool valid_header_name(std::string_view name) noexcept;

// dead_letter_headers() returns Idem's headers followed by the original
// ones; original names starting with "Nats-" get the "Idem-Original-" prefix
// so that they do not steer the dead-letter stream (dedup, expectations).
// Original headers with an unwritable name are left out.
Headers dead_letter_headers(const DeadLetterInput& input);

// dead_letter_msg_id() is the Nats-Msg-Id of the dead letter, so that the
// dead-letter stream stores one letter however often it is published: per
// key when the key identifies the event (every copy of a poisoned event is
// one letter), per stream sequence otherwise (undecodable messages, invalid
// keys, and mismatches, whose copies are different payloads).
std::string dead_letter_msg_id(const DeadLetterInput& input);

}  // namespace idem::nats::detail
