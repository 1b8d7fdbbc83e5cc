#include "common.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <limits>

#include "idem/core/key.h"

namespace idem::cli {

void add_common_options(CLI::App& command, CommonOptions& options) {
  command
      .add_option("--store", options.store_url,
                  "Store URL: memory://, sqlite:///path/idem.db, redis://host:6379 ... "
                  "(default: $IDEM_STORE_URL, else the library's default SQLite file)")
      ->envname("IDEM_STORE_URL");
  command.add_flag("--json", options.json, "Machine-readable output on stdout");
}

std::string effective_store_url(const CommonOptions& options) {
  if (!options.store_url.empty()) return options.store_url;
  if (const char* env = std::getenv("IDEM_STORE_URL"); env != nullptr && env[0] != '\0') return env;
  return default_store_url();
}

std::string redact_url(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const std::size_t authority = scheme_end + 3;
  const std::size_t at = url.find('@', authority);
  const std::size_t slash = url.find('/', authority);
  if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at)) return std::string(url);
  const std::size_t colon = url.find(':', authority);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

std::shared_ptr<Store> open_store_or_throw(const CommonOptions& options, Access access) {
  const std::string url = effective_store_url(options);
  auto store = open_store(url, {.create_if_missing = access == Access::kModify});
  if (!store) {
    if (store.error().code() == ErrorCode::kNotFound) {
      throw CliError(kExitError, "no store at " + redact_url(url) + ": " + store.error().message());
    }
    throw CliError(kExitError, "cannot open store " + redact_url(url) + ": " + store.error().to_string());
  }
  return std::move(*store);
}

void warn_if_process_local(const Store& store, const CommonOptions& options) {
  if (store.kind() == "memory" && !options.json) {
    std::cerr << "idem: note: memory:// lives inside one process; this command sees a new, empty store\n";
  }
}

std::chrono::milliseconds parse_duration(std::string_view text) {
  const std::string original(text);
  if (text.empty()) throw std::invalid_argument("empty duration");
  if (text == "0") return std::chrono::milliseconds(0);
  std::chrono::milliseconds total{0};
  while (!text.empty()) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) ++digits;
    if (digits == 0 || digits > 12) {
      throw std::invalid_argument("invalid duration '" + original + "' (expected e.g. 90s, 15m, 2h, 1d)");
    }
    const std::int64_t value = std::stoll(std::string(text.substr(0, digits)));
    text.remove_prefix(digits);
    std::size_t unit_length = 0;
    while (unit_length < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_length])) != 0) {
      ++unit_length;
    }
    const std::string_view unit = text.substr(0, unit_length);
    text.remove_prefix(unit_length);
    std::int64_t factor = 0;
    if (unit == "ms") {
      factor = 1;
    } else if (unit == "s") {
      factor = 1000;
    } else if (unit == "m") {
      factor = 60 * 1000;
    } else if (unit == "h") {
      factor = 3600 * 1000;
    } else if (unit == "d") {
      factor = 24 * 3600 * 1000;
    } else {
      throw std::invalid_argument("invalid duration '" + original + "': unit must be ms, s, m, h or d");
    }
    // 12 digits of days overflow 64-bit milliseconds: refuse instead.
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    if (value > kMax / factor || total.count() > kMax - value * factor) {
      throw std::invalid_argument("duration '" + original + "' is too long");
    }
    total += std::chrono::milliseconds(value * factor);
  }
  return total;
}

std::string validate_duration(const std::string& text) {
  try {
    (void)parse_duration(text);
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string format_duration(std::chrono::milliseconds duration) {
  std::string sign;
  auto ms = duration.count();
  if (ms < 0) {
    sign = "-";
    ms = -ms;
  }
  std::array<char, 48> buffer{};
  constexpr std::int64_t kSecond = 1000;
  constexpr std::int64_t kMinute = 60 * kSecond;
  constexpr std::int64_t kHour = 60 * kMinute;
  constexpr std::int64_t kDay = 24 * kHour;
  if (ms < kMinute) {
    std::snprintf(buffer.data(), buffer.size(), "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < kHour) {
    std::snprintf(buffer.data(), buffer.size(), "%lldm%02llds", static_cast<long long>(ms / kMinute),
                  static_cast<long long>((ms % kMinute) / kSecond));
  } else if (ms < kDay) {
    std::snprintf(buffer.data(), buffer.size(), "%lldh%02lldm", static_cast<long long>(ms / kHour),
                  static_cast<long long>((ms % kHour) / kMinute));
  } else {
    std::snprintf(buffer.data(), buffer.size(), "%lldd%02lldh", static_cast<long long>(ms / kDay),
                  static_cast<long long>((ms % kDay) / kHour));
  }
  return sign + buffer.data();
}

Timestamp now() { return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()); }

bool stdin_is_tty() { return ::isatty(STDIN_FILENO) == 1; }
bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

namespace {

std::string_view lease_state(const IdempotencyRecord& record, Timestamp now) {
  if (record.status != ProcessingStatus::kProcessing) return "none";
  return record.lease_valid(now) ? "held" : "expired";
}

}  // namespace

// A record written by the original Python module, read in place by the Redis
// store (docs/guide/migration.md): it has no fencing token, and no store
// hands out token 0.
bool is_legacy(const IdempotencyRecord& record) { return record.token == 0; }

nlohmann::json record_to_json(const IdempotencyRecord& record, Timestamp now) {
  using nlohmann::json;
  json out;
  out["key"] = record.idempotency_key;
  out["event_id"] = record.event_id;
  out["event_type"] = record.event_type;
  out["status"] = std::string(to_string(record.status));
  out["attempt"] = record.attempt;
  out["token"] = record.token;
  out["legacy"] = is_legacy(record);
  out["result"] = record.result ? json(*record.result) : json(nullptr);
  out["error"] = record.error ? json(*record.error) : json(nullptr);
  out["retryable"] = record.retryable;
  out["first_seen_at"] = format_rfc3339(record.first_seen_at);
  out["completed_at"] = record.completed_at ? json(format_rfc3339(*record.completed_at)) : json(nullptr);
  out["age_ms"] = (now - record.first_seen_at).count();
  json lease;
  lease["state"] = std::string(lease_state(record, now));
  lease["expires_at"] = format_rfc3339(record.lease_expires_at);
  lease["remaining_ms"] = std::max<std::int64_t>(0, (record.lease_expires_at - now).count());
  out["lease"] = std::move(lease);
  out["expires_at"] = format_rfc3339(record.expires_at);
  out["ttl_remaining_ms"] = std::max<std::int64_t>(0, (record.expires_at - now).count());
  out["fingerprint"] = record.fingerprint;
  if (record.checkpoint) {
    out["checkpoint"] = {{"name", record.checkpoint->name}, {"data", record.checkpoint->data}};
  } else {
    out["checkpoint"] = nullptr;
  }
  return out;
}

std::string lease_summary(const IdempotencyRecord& record, Timestamp now) {
  if (record.status != ProcessingStatus::kProcessing) return "none (" + std::string(to_string(record.status)) + ")";
  const auto remaining = record.lease_expires_at - now;
  if (remaining.count() > 0) return "held, " + format_duration(remaining) + " left";
  return "expired " + format_duration(-remaining) + " ago";
}

std::string record_to_text(const IdempotencyRecord& record, Timestamp now) {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    out += label;
    out.append(label.size() < 13 ? 13 - label.size() : 1, ' ');
    out += value;
    out += '\n';
  };
  line("key", record.idempotency_key);
  line("status",
       std::string(to_string(record.status)) +
           (record.status == ProcessingStatus::kFailed ? (record.retryable ? " (retryable)" : " (terminal)") : "") +
           (is_legacy(record) ? "   legacy: written by the original Python module" : ""));
  line("event", record.event_id + (record.event_type.empty() ? "" : " (" + record.event_type + ")"));
  line("attempt", std::to_string(record.attempt) + "   token " + std::to_string(record.token));
  line("lease", lease_summary(record, now));
  line("first seen",
       format_rfc3339(record.first_seen_at) + " (" + format_duration(now - record.first_seen_at) + " ago)");
  line("completed", record.completed_at ? format_rfc3339(*record.completed_at) : "-");
  const auto ttl = record.expires_at - now;
  line("expires", format_rfc3339(record.expires_at) + " (in " + format_duration(ttl) + ")");
  line("result", record.result ? *record.result : "-");
  line("error", record.error ? *record.error : "-");
  line("fingerprint", record.fingerprint.empty() ? "- (payload not checked)" : record.fingerprint);
  line("checkpoint", record.checkpoint ? record.checkpoint->name + " = " + record.checkpoint->data : "-");
  return out;
}

std::optional<Found> find_record(Store& store, std::string_view key, std::string_view scope) {
  std::vector<std::string> candidates;
  if (scope.empty()) candidates.emplace_back(key);
  // A raw idempotency key ("e1") is completed to the store key the library
  // would use ("idempotency:events:[scope:]e1").
  if (!key.starts_with(kDefaultKeyPrefix) || !scope.empty()) {
    KeyOptions options;
    options.scope = std::string(scope);
    options.max_key_length = 0;
    if (auto built = build_key(key, options)) candidates.push_back(std::move(*built));
  }
  for (const std::string& candidate : candidates) {
    auto record = store.get(candidate);
    if (!record) throw CliError(kExitError, "cannot read '" + candidate + "': " + record.error().to_string());
    if (record->has_value()) return Found{candidate, std::move(**record)};
  }
  return std::nullopt;
}

ProgressLine::ProgressLine() : enabled_(stderr_is_tty()) {}

ProgressLine::~ProgressLine() { clear(); }

void ProgressLine::show(std::string_view text) {
  if (!enabled_) return;
  // \r + erase-line: redraw in place without scrolling the terminal.
  std::fprintf(stderr, "\r\033[K%.*s", static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
  shown_ = true;
}

void ProgressLine::clear() {
  if (!enabled_ || !shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace idem::cli
