// File: fuzz/fuzz_nats_dead_letter.cpp
//
// libFuzzer target for the NATS consumer's dead letters, which are built
// from whatever a sender put in a message: its headers, its payload (as the
// error text of an undecodable envelope) and its key. Beyond "does not
// crash" it checks what keeps the dead-letter publish valid: no header value
// holds a control character (CR/LF would end the header), Idem's error text
// stays within its cap, no original "Nats-" header survives unrenamed (it
// would steer the dead-letter stream), and every original header is kept.
#include <fuzzer/FuzzedDataProvider.h>
#include <strings.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idem/core/envelope.h"
#include "integrations/nats/dead_letter.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_nats_dead_letter: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider provider(data, size);
  idem::nats::Headers original;
  const std::size_t count = provider.ConsumeIntegralInRange<std::size_t>(0, 8);
  for (std::size_t i = 0; i < count; ++i) {
    std::string name = provider.ConsumeRandomLengthString(24);
    std::string value = provider.ConsumeRandomLengthString(64);
    original.emplace_back(std::move(name), std::move(value));
  }
  const std::string subject = provider.ConsumeRandomLengthString(40);
  const std::string key = provider.ConsumeRandomLengthString(80);
  const auto reason = static_cast<idem::nats::DeadLetterReason>(
      provider.ConsumeIntegralInRange<int>(0, static_cast<int>(idem::nats::kDeadLetterReasonCount) - 1));
  const std::string payload = provider.ConsumeRemainingBytesAsString();

  // The consumer's own path: a payload that is not an envelope becomes the
  // error text of an undecodable dead letter.
  auto envelope = idem::Envelope::parse(payload);
  const std::string detail = envelope ? std::string("terminal: ") + payload : envelope.error().message();

  idem::nats::detail::DeadLetterInput in;
  in.reason = reason;
  in.detail = detail;
  in.subject = subject;
  in.stream = "S";
  in.stream_sequence = size;
  in.delivery = count;
  in.key = key;
  in.event_id = envelope ? std::string_view(envelope->event_id) : std::string_view();
  in.original = &original;
  const idem::nats::Headers headers = idem::nats::detail::dead_letter_headers(in);

  for (const auto& [name, value] : headers) {
    if (!idem::nats::detail::valid_header_name(name)) fail("an unwritable header name reached the letter");
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20U || u == 0x7FU) fail("a header value holds a control character");
    }
    if (name == idem::nats::header::kError && value.size() > idem::nats::detail::kMaxErrorHeaderBytes) {
      fail("the error header is longer than its cap");
    }
    if (name.size() >= 5 && ::strncasecmp(name.c_str(), "nats-", 5) == 0) fail("a Nats- header reached the letter");
  }
  // Every writable original header is kept, renamed when it starts "Nats-".
  for (const auto& [name, value] : original) {
    if (!idem::nats::detail::valid_header_name(name)) continue;
    const bool renamed = ::strncasecmp(name.c_str(), "nats-", 5) == 0;
    const std::string expected_name = renamed ? std::string(idem::nats::header::kRenamedPrefix) + name : name;
    bool found = false;
    for (const auto& [n, v] : headers)
      found = found || (n == expected_name &&
                        v == idem::nats::detail::header_value(value, idem::nats::detail::kMaxHeaderValueBytes));
    if (!found) fail("an original header was dropped");
  }
  if (idem::nats::detail::dead_letter_msg_id(in).rfind("idem-dlq:", 0) != 0)
    fail("the letter's msg id lost its prefix");
  return 0;
}
