// RedisStore::parse_url() and RedisStoreOptions::validate().
#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include "idem/stores/redis.h"

namespace idem {
namespace {

Error bad_url(std::string_view url, std::string_view why) {
  // Echo the URL to help the operator, but never a password: the query
  // (which may hold sentinel_password) is left out, and a URL with user info
  // anywhere is shown as its scheme only, since a malformed one cannot be
  // split reliably into secret and non-secret parts.
  std::string shown;
  if (url.find('@') != std::string_view::npos) {
    const auto scheme_end = url.find("://");
    if (scheme_end != std::string_view::npos) shown.assign(url.substr(0, scheme_end)).append("://(credentials hidden)");
  } else {
    shown.assign(url.substr(0, url.find('?')));
  }
  std::string msg = "redis: invalid store URL";
  if (!shown.empty()) msg += " '" + shown + "'";
  msg += ": ";
  msg.append(why);
  return Error(ErrorCode::kInvalidConfiguration, std::move(msg));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool parse_endpoint(std::string_view text, RedisEndpoint& ep) {
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with('[')) {  // [::1]:6379
    const auto close = text.find(']');
    if (close == std::string_view::npos) return false;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return false;
      port = rest.substr(1);
    }
  } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return false;
  ep.host = std::string(host);
  if (!port.empty()) {
    std::uint16_t p = 0;
    if (!parse_number(port, p) || p == 0) return false;
    ep.port = p;
  }
  return true;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto pos = text.find(sep);
    out.push_back(text.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    text.remove_prefix(pos + 1);
  }
}

}  // namespace

Status RedisStoreOptions::validate() const {
  auto invalid = [](std::string msg) { return Status(Error(ErrorCode::kInvalidConfiguration, "redis: " + msg)); };
  if (endpoints.empty()) return invalid("at least one endpoint is required");
  for (const RedisEndpoint& ep : endpoints) {
    if (ep.host.empty() || ep.port == 0) return invalid("every endpoint needs a host and a port");
  }
  if (mode == RedisMode::kSentinel && master_name.empty()) return invalid("Sentinel mode needs a master name");
  if (mode == RedisMode::kCluster && db != 0) return invalid("Redis Cluster has only database 0");
  if (db < 0) return invalid("db must be >= 0");
  if (connect_timeout.count() <= 0 || command_timeout.count() <= 0) return invalid("timeouts must be positive");
  if (pool_size == 0 || pool_size > 256) return invalid("pool_size must be in 1..256");
  if (retry.max_attempts == 0) return invalid("retry.max_attempts must be >= 1 (1 disables retries)");
  if (retry.jitter < 0.0 || retry.jitter > 1.0) return invalid("retry.jitter must be in 0..1");
  if (retry.base_backoff.count() < 0 || retry.max_backoff < retry.base_backoff) {
    return invalid("retry backoff must satisfy 0 <= base_backoff <= max_backoff");
  }
  if (circuit_breaker.enabled && circuit_breaker.failure_threshold == 0) {
    return invalid("circuit_breaker.failure_threshold must be >= 1");
  }
  if (wait_replicas > 0 && wait_timeout >= command_timeout) {
    return invalid("wait_timeout must be shorter than command_timeout");
  }
  if (legacy_lease.count() <= 0) return invalid("legacy_lease must be positive");
  if (tls.cert_file.empty() != tls.key_file.empty()) return invalid("TLS needs both cert and key, or neither");
  return {};
}

Result<RedisStoreOptions> RedisStore::parse_url(std::string_view url) {
  RedisStoreOptions opt;
  std::string_view rest;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad_url(url, "expected scheme://");
  const std::string_view scheme = url.substr(0, sep);
  rest = url.substr(sep + 3);
  if (scheme == "redis") {
    opt.mode = RedisMode::kStandalone;
  } else if (scheme == "rediss") {
    opt.mode = RedisMode::kStandalone;
    opt.tls.enabled = true;
  } else if (scheme == "redis+sentinel" || scheme == "rediss+sentinel") {
    opt.mode = RedisMode::kSentinel;
    opt.tls.enabled = scheme.starts_with("rediss");
  } else if (scheme == "redis+cluster" || scheme == "rediss+cluster") {
    opt.mode = RedisMode::kCluster;
    opt.tls.enabled = scheme.starts_with("rediss");
  } else {
    return bad_url(url, "scheme must be redis, rediss, redis+sentinel or redis+cluster");
  }

  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    std::string_view user = userinfo.substr(0, colon);
    if (!percent_decode(user, opt.username)) return bad_url(url, "bad percent-encoding in the user");
    if (colon != std::string_view::npos) {
      if (!percent_decode(userinfo.substr(colon + 1), opt.password)) {
        return bad_url(url, "bad percent-encoding in the password");
      }
    }
  }
  std::string_view hosts = rest;
  std::string_view path;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    hosts = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  opt.endpoints.clear();
  if (hosts.empty()) {
    opt.endpoints.push_back(RedisEndpoint{});
    if (opt.mode == RedisMode::kSentinel) opt.endpoints.back().port = 26379;
  } else {
    for (std::string_view h : split(hosts, ',')) {
      RedisEndpoint ep;
      if (opt.mode == RedisMode::kSentinel) ep.port = 26379;
      if (!parse_endpoint(h, ep)) return bad_url(url, "bad host:port '" + std::string(h) + "'");
      opt.endpoints.push_back(std::move(ep));
    }
  }
  if (opt.mode == RedisMode::kStandalone && opt.endpoints.size() != 1) {
    return bad_url(url, "a standalone URL names exactly one host (use redis+sentinel:// or redis+cluster://)");
  }
  auto parse_db = [&](std::string_view text) -> bool { return parse_number(text, opt.db) && opt.db >= 0; };
  if (!path.empty()) {
    const std::vector<std::string_view> parts = split(path, '/');
    if (opt.mode == RedisMode::kSentinel) {
      if (!percent_decode(parts[0], opt.master_name)) return bad_url(url, "bad master name");
      if (parts.size() > 2 || (parts.size() == 2 && !parts[1].empty() && !parse_db(parts[1]))) {
        return bad_url(url, "expected /mastername[/db]");
      }
    } else if (parts.size() != 1 || (!parts[0].empty() && !parse_db(parts[0]))) {
      return bad_url(url, "expected /db (a number)");
    }
  }

  if (!query.empty()) {
    for (std::string_view item : split(query, '&')) {
      if (item.empty()) continue;
      const auto eq = item.find('=');
      const std::string_view k = item.substr(0, eq);
      std::string v;
      if (!percent_decode(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1), v)) {
        return bad_url(url, "bad percent-encoding in query value of '" + std::string(k) + "'");
      }
      auto ms = [&](std::chrono::milliseconds& out) {
        long long n = 0;
        if (!parse_number(std::string_view(v), n) || n < 0) return false;
        out = std::chrono::milliseconds(n);
        return true;
      };
      bool ok = true;
      if (k == "ca") {
        opt.tls.ca_file = v;
      } else if (k == "cert") {
        opt.tls.cert_file = v;
      } else if (k == "key") {
        opt.tls.key_file = v;
      } else if (k == "verify") {
        ok = v == "0" || v == "1";
        opt.tls.verify = v == "1";
      } else if (k == "sni") {
        opt.tls.sni = v;
      } else if (k == "tls") {
        ok = v == "0" || v == "1";
        opt.tls.enabled = v == "1";
      } else if (k == "connect_timeout_ms") {
        ok = ms(opt.connect_timeout);
      } else if (k == "command_timeout_ms") {
        ok = ms(opt.command_timeout);
      } else if (k == "pool_size") {
        ok = parse_number(std::string_view(v), opt.pool_size);
      } else if (k == "retries") {
        ok = parse_number(std::string_view(v), opt.retry.max_attempts);
      } else if (k == "breaker_threshold") {
        ok = parse_number(std::string_view(v), opt.circuit_breaker.failure_threshold);
        if (ok && opt.circuit_breaker.failure_threshold == 0) opt.circuit_breaker.enabled = false;
      } else if (k == "breaker_open_ms") {
        ok = ms(opt.circuit_breaker.open_duration);
      } else if (k == "wait_replicas") {
        ok = parse_number(std::string_view(v), opt.wait_replicas);
      } else if (k == "wait_timeout_ms") {
        ok = ms(opt.wait_timeout);
      } else if (k == "sentinel_password") {
        opt.sentinel_password = v;
      } else if (k == "layout") {
        ok = v == "packed" || v == "json";
        opt.layout = v == "json" ? RedisLayout::kJson : RedisLayout::kPacked;
      } else if (k == "legacy") {
        ok = v == "0" || v == "1";
        opt.legacy_records = v == "1";
      } else if (k == "legacy_lease_ms") {
        ok = ms(opt.legacy_lease);
      } else if (k == "db") {
        ok = parse_db(v);
      } else {
        return bad_url(url, "unknown query parameter '" + std::string(k) + "'");
      }
      if (!ok) return bad_url(url, "bad value for '" + std::string(k) + "'");
    }
  }
  if (Status st = opt.validate(); !st) return std::move(st).error();
  return opt;
}

}  // namespace idem
