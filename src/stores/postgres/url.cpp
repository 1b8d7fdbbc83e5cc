// PostgresStore::parse_url(), redact_url() and PostgresStoreOptions::validate().
//
// The URL is libpq's URI form, parsed here rather than handed to libpq, so
// that the store's own keys (schema, pool_size, ...) can live in the same
// query, every error is a kInvalidConfiguration naming the part at fault, and no
// error message ever echoes a password.
#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "core/url_query.h"
#include "idem/stores/postgres.h"

namespace idem {
namespace {

constexpr std::size_t kMaxSchemaLength = 48;

// libpq connection keywords accepted in the query, besides the store's own.
constexpr std::array<std::string_view, 33> kLibpqKeywords = {
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "gssencmode",
    "krbsrvname",
    "channel_binding",
    "application_name",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "options",
    "service",
    "load_balance_hosts",
    "gsslib",
};

bool is_secret_key(std::string_view name) { return name == "password" || name == "sslpassword"; }

Error bad_url(std::string_view url, std::string_view why) {
  std::string msg = "postgresql: invalid store URL '" + PostgresStore::redact_url(url) + "': ";
  msg.append(why);
  return Error(ErrorCode::kInvalidConfiguration, std::move(msg));
}

// Percent-decodes `in`; false on a malformed escape or a decoded NUL (libpq
// takes C strings).
bool percent_decode(std::string_view in, std::string& out) {
  std::optional<std::string> decoded = detail::percent_decode(in);
  if (!decoded || decoded->find('\0') != std::string::npos) return false;
  out = std::move(*decoded);
  return true;
}

bool valid_port(std::string_view port) {
  if (port.empty()) return true;  // libpq's default
  auto n = detail::parse_unsigned(port);
  return n && *n >= 1 && *n <= 65535;
}

}  // namespace

Status PostgresStoreOptions::validate() const {
  auto invalid = [](std::string why) { return Error(ErrorCode::kInvalidConfiguration, "postgresql store: " + why); };
  if (schema.empty() || schema.size() > kMaxSchemaLength) {
    return invalid("schema must be 1 to " + std::to_string(kMaxSchemaLength) + " characters");
  }
  const bool schema_ok = std::all_of(schema.begin(), schema.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (!schema_ok || (schema[0] >= '0' && schema[0] <= '9')) {
    return invalid("schema '" + schema +
                   "' must be lower-case letters, digits and '_', not starting with a digit (e.g. idem)");
  }
  if (schema.starts_with("pg_")) return invalid("schema names starting with pg_ are reserved by PostgreSQL");
  if (pool_size == 0 || pool_size > 64) return invalid("pool_size must be between 1 and 64");
  if (max_transactions == 0 || max_transactions > 1024) return invalid("max_transactions must be between 1 and 1024");
  if (connect_timeout.count() <= 0) return invalid("connect_timeout must be positive");
  if (command_timeout.count() < 0) return invalid("command_timeout must not be negative (0 means no bound)");
  if (sweep_interval.count() < 0) return invalid("sweep_interval must not be negative (0 means no sweeper)");
  if (transaction_statement_timeout.count() < 0 ||
      transaction_statement_timeout > std::chrono::milliseconds(std::numeric_limits<int>::max())) {
    return invalid("transaction_statement_timeout must be between 0 (no bound) and 2^31-1 ms");
  }
  if (circuit_breaker.enabled && circuit_breaker.failure_threshold == 0) {
    return invalid("circuit_breaker.failure_threshold must be >= 1 (or disable the breaker)");
  }
  if (circuit_breaker.enabled && circuit_breaker.open_duration.count() <= 0) {
    return invalid("circuit_breaker.open_duration must be positive");
  }
  auto has_nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  for (const std::string* s :
       {&host, &port, &dbname, &user, &password, &sslmode, &sslrootcert, &sslcert, &sslkey, &application_name}) {
    if (has_nul(*s)) return invalid("a connection parameter contains a NUL byte");
  }
  for (const auto& [name, value] : libpq_params) {
    if (name.empty() || has_nul(name) || has_nul(value)) {
      return invalid("libpq_params holds an empty name or a NUL byte");
    }
  }
  if (!sslmode.empty()) {
    constexpr std::array<std::string_view, 6> kModes = {"disable", "allow",     "prefer",
                                                        "require", "verify-ca", "verify-full"};
    if (std::find(kModes.begin(), kModes.end(), sslmode) == kModes.end()) {
      return invalid("sslmode '" + sslmode + "' is not one of disable, allow, prefer, require, verify-ca, verify-full");
    }
  }
  return ok_status();
}

std::string PostgresStore::redact_url(std::string_view url) {
  std::string out(url);
  // The query starts at the first '?', wherever a "://" may appear after it.
  const std::size_t query_start = out.find('?');
  std::size_t scheme_end = out.find("://");
  if (scheme_end != std::string::npos && query_start != std::string::npos && scheme_end > query_start) {
    scheme_end = std::string::npos;
  }
  const std::size_t authority = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  // The user info ends at the last '@' before the path or the query.
  const std::size_t end = std::min(out.find('/', authority), query_start);
  const std::size_t at = out.rfind('@', end == std::string::npos ? std::string::npos : end);
  if (at != std::string::npos && at >= authority) {
    const std::size_t colon = out.find(':', authority);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  const std::size_t query = out.find('?');
  if (query == std::string::npos) return out;
  std::size_t pos = query + 1;
  while (pos <= out.size()) {
    std::size_t amp = out.find('&', pos);
    if (amp == std::string::npos) amp = out.size();
    const std::size_t eq = out.find('=', pos);
    if (eq != std::string::npos && eq < amp) {
      std::string name;
      if (percent_decode(std::string_view(out).substr(pos, eq - pos), name) && is_secret_key(name)) {
        out.replace(eq + 1, amp - eq - 1, "***");
        amp = eq + 4;
      }
    }
    pos = amp + 1;
  }
  return out;
}

Result<PostgresStoreOptions> PostgresStore::parse_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("postgresql://")) {
    rest = url.substr(13);
  } else if (url.starts_with("postgres://")) {
    rest = url.substr(11);
  } else {
    return bad_url(url, "the scheme must be postgresql:// or postgres://");
  }
  if (rest.find('#') != std::string_view::npos) return bad_url(url, "a fragment ('#') is not allowed");
  std::string_view query;
  if (const std::size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view path;
  if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  PostgresStoreOptions options;
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const std::size_t colon = userinfo.find(':');
    if (!percent_decode(userinfo.substr(0, colon), options.user)) {
      return bad_url(url, "the user name has a malformed %-escape");
    }
    if (colon != std::string_view::npos && !percent_decode(userinfo.substr(colon + 1), options.password)) {
      return bad_url(url, "the password has a malformed %-escape");
    }
  }
  // Hosts: host[:port] items separated by ',' ([v6]:port for IPv6).
  if (!rest.empty()) {
    std::string hosts;
    std::string ports;
    bool any_port = false;
    std::size_t start = 0;
    for (int n = 0;; ++n) {
      const std::size_t comma = rest.find(',', start);
      const std::string_view item = rest.substr(start, comma == std::string_view::npos ? comma : comma - start);
      std::string_view host = item;
      std::string_view port;
      if (item.starts_with('[')) {
        const std::size_t close = item.find(']');
        if (close == std::string_view::npos) return bad_url(url, "an IPv6 address lacks its ']'");
        host = item.substr(1, close - 1);
        const std::string_view after = item.substr(close + 1);
        if (!after.empty()) {
          if (after[0] != ':') return bad_url(url, "unexpected text after an IPv6 address");
          port = after.substr(1);
        }
      } else if (const std::size_t colon = item.rfind(':'); colon != std::string_view::npos) {
        host = item.substr(0, colon);
        port = item.substr(colon + 1);
      }
      std::string decoded;
      if (!percent_decode(host, decoded)) return bad_url(url, "a host has a malformed %-escape");
      if (decoded.find(',') != std::string::npos) return bad_url(url, "a host contains ','");
      if (!valid_port(port)) return bad_url(url, "a port must be a number between 1 and 65535");
      if (n > 0) {
        hosts += ',';
        ports += ',';
      }
      hosts += decoded;
      ports.append(port);
      any_port = any_port || !port.empty();
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    options.host = std::move(hosts);
    if (any_port) options.port = std::move(ports);
  }
  if (!path.empty() && !percent_decode(path, options.dbname)) {
    return bad_url(url, "the database name has a malformed %-escape");
  }
  if (!query.empty()) {
    auto params = detail::split_url_query(query);
    if (!params) {
      // The splitter names the offending item; a secret could be in it.
      return bad_url(url, "every query item must be name=value");
    }
    auto millis = [&](std::string_view value, std::string_view name, bool zero_ok,
                      std::chrono::milliseconds& out) -> std::optional<Error> {
      auto n = detail::parse_unsigned(value);
      if (!n || (!zero_ok && *n == 0) || *n > 86'400'000ULL * 365) {
        return bad_url(url, "'" + std::string(name) + "' must be a " + (zero_ok ? "non-negative" : "positive") +
                                " number of milliseconds");
      }
      out = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(*n));
      return std::nullopt;
    };
    for (const auto& param : *params) {
      std::string name;
      std::string value;
      if (!percent_decode(param.name, name)) return bad_url(url, "a query name has a malformed %-escape");
      if (!percent_decode(param.value, value)) {
        return bad_url(url, is_secret_key(name) ? "a secret has a malformed %-escape"
                                                : "the value of '" + name + "' has a malformed %-escape");
      }
      if (name == "schema") {
        options.schema = value;
      } else if (name == "pool_size" || name == "max_transactions") {
        auto n = detail::parse_unsigned(value);
        if (!n || *n == 0 || *n > 1024) return bad_url(url, "'" + name + "' must be a positive number");
        (name == "pool_size" ? options.pool_size : options.max_transactions) = static_cast<std::size_t>(*n);
      } else if (name == "connect_timeout_ms") {
        if (auto e = millis(value, name, false, options.connect_timeout)) return std::move(*e);
      } else if (name == "command_timeout_ms") {
        if (auto e = millis(value, name, true, options.command_timeout)) return std::move(*e);
      } else if (name == "sweep_interval_ms") {
        if (auto e = millis(value, name, true, options.sweep_interval)) return std::move(*e);
      } else if (name == "tx_statement_timeout_ms") {
        if (auto e = millis(value, name, true, options.transaction_statement_timeout)) return std::move(*e);
      } else if (name == "breaker_threshold") {
        // As for Redis: 0 turns the breaker off.
        auto n = detail::parse_unsigned(value);
        if (!n || *n > 1'000'000) return bad_url(url, "'breaker_threshold' must be a number (0: no breaker)");
        options.circuit_breaker.failure_threshold = static_cast<std::uint32_t>(*n);
        options.circuit_breaker.enabled = *n > 0;
      } else if (name == "breaker_open_ms") {
        if (auto e = millis(value, name, false, options.circuit_breaker.open_duration)) return std::move(*e);
      } else if (name == "connect_timeout") {
        // libpq's own spelling, in seconds.
        auto n = detail::parse_unsigned(value);
        if (!n || *n == 0 || *n > 86'400) return bad_url(url, "'connect_timeout' must be a positive number of seconds");
        options.connect_timeout = std::chrono::seconds(static_cast<std::chrono::seconds::rep>(*n));
      } else if (name == "migrate") {
        if (value != "0" && value != "1") return bad_url(url, "'migrate' must be 0 or 1");
        options.migrate = value == "1";
      } else if (name == "host") {
        options.host = value;
      } else if (name == "port") {
        options.port = value;
      } else if (name == "dbname") {
        options.dbname = value;
      } else if (name == "user") {
        options.user = value;
      } else if (name == "password") {
        options.password = value;
      } else if (name == "sslmode") {
        options.sslmode = value;
      } else if (name == "sslrootcert") {
        options.sslrootcert = value;
      } else if (name == "sslcert") {
        options.sslcert = value;
      } else if (name == "sslkey") {
        options.sslkey = value;
      } else if (name == "application_name") {
        options.application_name = value;
      } else if (std::find(kLibpqKeywords.begin(), kLibpqKeywords.end(), name) != kLibpqKeywords.end()) {
        options.libpq_params.emplace_back(name, value);
      } else {
        return bad_url(url, "unknown query parameter '" + name +
                                "' (store keys: schema, pool_size, max_transactions, connect_timeout_ms, "
                                "command_timeout_ms, sweep_interval_ms, tx_statement_timeout_ms, breaker_threshold, "
                                "breaker_open_ms, migrate; or a libpq keyword such as sslmode)");
      }
    }
  }
  if (Status s = options.validate(); !s) return bad_url(url, s.error().message());
  return options;
}

}  // namespace idem
