// File: src/core/fingerprint.h
//
// The payload fingerprint without the allocations of the public
// Envelope::payload_fingerprint(): the checker computes one per claim, so it
// writes into a caller's buffer. Both give the same 32 hex characters.
//
// The expensive part used to be canonicalizing the payload (parse + dump,
// ~3 µs on 100 bytes). Most payloads are canonical already (Envelope::parse()
// and set_payload_json() store them that way), so a single pass first checks
// whether the text is exactly what parse + dump would produce and hashes it
// as it is; only text that fails the check is parsed and dumped.
#pragma once

#include <array>
#include <string_view>

namespace idem::detail {

using FingerprintHex = std::array<char, 32>;

// Writes the fingerprint of `payload` (hex SHA-256, first 128 bits, of its
// canonical JSON form; of the text as written when it is not JSON or nests
// deeper than 64 levels) into `out`.
void payload_fingerprint(std::string_view payload, FingerprintHex& out);

// is_canonical_json() is true only when `text` is one JSON value with no
// whitespace, object keys strictly increasing (byte order, no escapes in
// keys), strings escaped exactly as nlohmann::json::dump() escapes them,
// numbers as dump() writes them, and at most 64 levels of nesting: then
// parse(text).dump() == text, and hashing `text` as it is gives the
// canonical fingerprint. False means "not proven", never "not JSON".
bool is_canonical_json(std::string_view text) noexcept;

// SHA-256 of `data` through a digest fetched once and a context reused per
// thread: EVP_Digest(..., EVP_sha256(), ...) looks the algorithm up on every
// call, which costs more than hashing a small payload.
void sha256(std::string_view data, std::array<unsigned char, 32>& out);

}  // namespace idem::detail
