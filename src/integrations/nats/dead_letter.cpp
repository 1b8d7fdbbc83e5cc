#include "integrations/nats/dead_letter.h"

namespace idem::nats::detail {

std::string header_value(std::string_view text, std::size_t max) {
  if (text.size() > max) {
    std::size_t cut = max;
    // Back up over UTF-8 continuation bytes (10xxxxxx) to a character start.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U) --cut;
    text = text.substr(0, cut);
  }
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20U || u == 0x7FU) c = ' ';
  }
  return out;
}

namespace {
bool starts_with_nats(std::string_view name) {
  constexpr std::string_view kNats = "Nats-";
  if (name.size() < kNats.size()) return false;
  for (std::size_t i = 0; i < kNats.size(); ++i) {
    char a = name[i];
    char b = kNats[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}
}  // namespace

bool valid_header_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20U || u >= 0x7FU || c == ':') return false;
  }
  return true;
}

Headers dead_letter_headers(const DeadLetterInput& input) {
  constexpr std::size_t kMaxValue = kMaxHeaderValueBytes;
  Headers out;
  out.emplace_back(header::kReason, std::string(to_string(input.reason)));
  out.emplace_back(header::kError, header_value(input.detail, kMaxErrorHeaderBytes));
  out.emplace_back(header::kOriginalSubject, header_value(input.subject, kMaxValue));
  if (!input.stream.empty()) out.emplace_back(header::kOriginalStream, header_value(input.stream, kMaxValue));
  out.emplace_back(header::kOriginalSequence, std::to_string(input.stream_sequence));
  out.emplace_back(header::kDeliveryCount, std::to_string(input.delivery));
  if (input.attempt > 0) out.emplace_back(header::kAttempt, std::to_string(input.attempt));
  if (!input.key.empty()) out.emplace_back(header::kKey, header_value(input.key, kMaxValue));
  if (!input.event_id.empty()) out.emplace_back(header::kEventId, header_value(input.event_id, kMaxValue));
  if (input.original != nullptr) {
    for (const auto& [name, value] : *input.original) {
      if (!valid_header_name(name)) continue;  // nats.c never parses one, but be safe
      std::string renamed = starts_with_nats(name) ? std::string(header::kRenamedPrefix) + name : name;
      out.emplace_back(std::move(renamed), header_value(value, kMaxValue));
    }
  }
  return out;
}

std::string dead_letter_msg_id(const DeadLetterInput& input) {
  const bool per_key = !input.key.empty() && input.reason != DeadLetterReason::kMismatch &&
                       input.reason != DeadLetterReason::kInvalidKey && input.reason != DeadLetterReason::kUndecodable;
  if (per_key) return "idem-dlq:" + std::string(input.key);
  return "idem-dlq:" + std::string(input.stream) + ":" + std::to_string(input.stream_sequence);
}

}  // namespace idem::nats::detail
