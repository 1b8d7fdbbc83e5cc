// File: fuzz/fuzz_envelope.cpp
//
// libFuzzer target for idem::Envelope::parse, the first thing that touches
// bytes from the network. Beyond "does not crash", it checks the properties
// the rest of Idem relies on:
//   - a parsed envelope has a non-empty event_id and a non-empty key;
//   - parse(to_json()) gives back the same envelope (re-publishing an event
//     must not change its key or its payload fingerprint);
//   - the payload is canonical: re-canonicalizing it changes nothing;
//   - the input itself, set by hand as a payload, fingerprints like its
//     canonical form (the fingerprint's fast path for canonical text must
//     never disagree with parse + dump);
//   - a rejection is kInvalidArgument with a message, never another code.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "idem/core/envelope.h"
#include "idem/core/error.h"

namespace {

[[noreturn]] void fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "fuzz_envelope: %s\ninput: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // is_rfc3339 is noexcept and sees raw peer text: it must accept or reject
  // anything without reading out of bounds.
  (void)idem::is_rfc3339(input);

  idem::Envelope raw;
  raw.payload = std::string(input);
  const std::string raw_fingerprint = raw.payload_fingerprint();
  if (raw_fingerprint.size() != 32) fail("fingerprint of raw text is not 32 hex characters", input);
  idem::Envelope canonical;
  if (canonical.set_payload_json(input).ok() && canonical.payload_fingerprint() != raw_fingerprint) {
    fail("a hand-set payload fingerprints unlike its canonical form", input);
  }

  auto parsed = idem::Envelope::parse(input);
  if (!parsed) {
    if (parsed.error().code() != idem::ErrorCode::kInvalidArgument) fail("rejection is not kInvalidArgument", input);
    if (parsed.error().message().empty()) fail("rejection without a message", input);
    return 0;
  }
  const idem::Envelope& envelope = *parsed;
  if (envelope.event_id.empty()) fail("accepted an empty event_id", input);
  if (envelope.effective_key().empty()) fail("accepted an envelope with an empty key", input);
  if (!envelope.occurred_at.empty() && !idem::is_rfc3339(envelope.occurred_at)) {
    fail("accepted an invalid occurred_at", input);
  }
  if (envelope.payload_fingerprint().size() != 32) fail("fingerprint is not 32 hex characters", input);

  const std::string json = envelope.to_json();
  auto again = idem::Envelope::parse(json);
  if (!again) fail("to_json() output does not parse", json);
  if (again->event_id != envelope.event_id || again->event_type != envelope.event_type ||
      again->source != envelope.source || again->occurred_at != envelope.occurred_at ||
      again->metadata != envelope.metadata || again->idempotency_key != envelope.idempotency_key) {
    fail("parse(to_json()) changed a field", input);
  }
  if (again->payload != envelope.payload) fail("parse(to_json()) changed the payload", input);
  if (again->payload_fingerprint() != envelope.payload_fingerprint()) fail("round trip changed the fingerprint", input);

  idem::Envelope copy = envelope;
  if (!copy.set_payload_json(envelope.payload).ok()) fail("canonical payload is rejected by set_payload_json", input);
  if (copy.payload != envelope.payload) fail("payload is not canonical", input);
  return 0;
}
