// JSON records: the original module's and layout=json; see json_layout.h.
//
// The record is walked by a small strict scanner that keeps each member's raw
// text, so that a result stored as an object comes back byte for byte (a
// parse and dump would reorder or reformat it); nlohmann::json decodes the
// scalar members and checks what is kept raw.
#include "stores/redis/json_layout.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "stores/redis/resp.h"

namespace idem::redis_detail {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kDefaultPrefix = "idempotency:events:";
// The original module's default TTL: the estimated expiry of a legacy record
// read without its key's PEXPIRETIME.
constexpr milliseconds kLegacyTtl{24 * 3600 * 1000};
constexpr long long kMaxMs = 4'000'000'000'000'000LL;
constexpr long long kMaxToken = 4'000'000'000'000'000'000LL;
constexpr int kMaxDepth = 256;
// 9999-12-31T23:59:59.999Z: the last instant with a four-digit year.
constexpr long long kMaxIsoMs = 253'402'300'799'999LL;

// Scanner checks that a JSON value is well formed and returns its extent.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : s_(text) {}

  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool at_end() {
    ws();
    return pos_ == s_.size();
  }
  // value() skips one value; `out` is its text.
  bool value(std::string_view& out, int depth = 0) {
    ws();
    const std::size_t start = pos_;
    if (pos_ >= s_.size() || depth > kMaxDepth) return false;
    bool ok = false;
    switch (s_[pos_]) {
      case '{': ok = members(depth, nullptr); break;
      case '[': ok = elements(depth); break;
      case '"': ok = string(); break;
      case 't': ok = literal("true"); break;
      case 'f': ok = literal("false"); break;
      case 'n': ok = literal("null"); break;
      default: ok = number(); break;
    }
    if (!ok) return false;
    out = s_.substr(start, pos_ - start);
    return true;
  }
  // members() reads an object; with `out`, collects (raw key, raw value).
  bool members(int depth, std::vector<std::pair<std::string_view, std::string_view>>* out) {
    if (!eat('{')) return false;
    if (eat('}')) return true;
    for (;;) {
      ws();
      const std::size_t start = pos_;
      if (!string()) return false;
      const std::string_view k = s_.substr(start, pos_ - start);
      if (!eat(':')) return false;
      std::string_view v;
      if (!value(v, depth + 1)) return false;
      if (out != nullptr) out->emplace_back(k, v);
      if (eat('}')) return true;
      if (!eat(',')) return false;
    }
  }

 private:
  bool elements(int depth) {
    if (!eat('[')) return false;
    if (eat(']')) return true;
    for (;;) {
      std::string_view v;
      if (!value(v, depth + 1)) return false;
      if (eat(']')) return true;
      if (!eat(',')) return false;
    }
  }
  bool string() {
    if (pos_ >= s_.size() || s_[pos_] != '"') return false;
    for (++pos_; pos_ < s_.size(); ++pos_) {
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++pos_ >= s_.size()) return false;
        const char e = s_[pos_];
        if (e == 'u') {
          for (int i = 0; i < 4; ++i) {
            if (++pos_ >= s_.size() || std::isxdigit(static_cast<unsigned char>(s_[pos_])) == 0) return false;
          }
        } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return false;
        }
      }
    }
    return false;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool digits() {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }
  bool number() {
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return false;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) return false;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return false;
    }
    return true;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

using Json = nlohmann::json;

// utf8_valid() is true for well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF), what nlohmann::json and Python accept.
bool utf8_valid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

// parse() is nlohmann's parse without exceptions (discarded on any error),
// with the members of a record (plain strings, integers, literals) read
// directly: they are most of a record, and the lexer was most of its cost.
// `text` is one value the Scanner accepted.
Json parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '"' && text.find('\\') == std::string_view::npos) {
    const std::string_view inner = text.substr(1, text.size() - 2);
    if (!utf8_valid(inner)) return Json(Json::value_t::discarded);
    return Json(std::string(inner));
  }
  if (!text.empty() && text.size() <= 18 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    long long v = 0;
    std::from_chars(text.data(), text.data() + text.size(), v);
    return Json(v);
  }
  if (text == "null") return Json();
  if (text == "true") return Json(true);
  if (text == "false") return Json(false);
  return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// valid_json() is Json::accept() for a value the Scanner accepted: only
// UTF-8 (and, through a \u escape, surrogate pairs) is left to check.
bool valid_json(std::string_view text) {
  if (text.find("\\u") == std::string_view::npos) return utf8_valid(text);
  return Json::accept(text);
}

std::optional<std::string> json_string(std::string_view text) {
  if (!utf8_valid(text)) return std::nullopt;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string lossy_json_string(std::string_view text) {
  return Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(std::max(n, 0)));
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the bytes the padding stands for.
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  if (base64(out) != text) return std::nullopt;  // not canonical: not ours
  return out;
}

// A JSON object text stored as is: it must be one object, nothing around it,
// and not look like the wrapper.
bool storable_as_object(std::string_view text) {
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return false;
  Scanner sc(text);
  std::vector<std::pair<std::string_view, std::string_view>> members;
  if (!sc.members(0, &members) || !sc.at_end()) return false;
  if (!valid_json(text)) return false;  // UTF-8, and what the scanner lets through
  if (members.size() == 1) {
    const Json k = parse(members[0].first);
    if (k == "idem_value" || k == "idem_base64") return false;
  }
  return true;
}

std::string result_json(const std::optional<std::string>& result) {
  if (!result) return "null";
  if (storable_as_object(*result)) return *result;
  if (std::optional<std::string> s = json_string(*result)) return "{\"idem_value\":" + *s + "}";
  return "{\"idem_base64\":\"" + base64(*result) + "\"}";
}

void append_error(std::string& out, const std::optional<std::string>& error) {
  out += "\"error\":";
  if (!error) {
    out += "null";
    return;
  }
  if (std::optional<std::string> s = json_string(*error)) {
    out += *s;
    return;
  }
  out += lossy_json_string(*error);
  out += ",\"error_base64\":\"" + base64(*error) + "\"";
}

const char* status_name(ProcessingStatus s) {
  switch (s) {
    case ProcessingStatus::kProcessing: return "PROCESSING";
    case ProcessingStatus::kCompleted: return "COMPLETED";
    case ProcessingStatus::kFailed: return "FAILED";
  }
  return "PROCESSING";
}

// The "idempotency_key" of the original model is the event's key, without
// the prefix; Idem reads the record's key from Redis instead.
std::string_view model_key(std::string_view key) {
  if (key.starts_with(kDefaultPrefix)) key.remove_prefix(kDefaultPrefix.size());
  return key;
}

bool integer(const Json& j, long long& out, long long max) {
  if (j.is_number_integer() || j.is_number_unsigned()) {
    if (j.is_number_unsigned() && j.get<std::uint64_t>() > static_cast<std::uint64_t>(max)) return false;
    out = j.get<long long>();
  } else if (j.is_number_float()) {
    // Lua's cjson writes every number as a double.
    const double d = j.get<double>();
    if (!(d >= 0 && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<long long>(d))) return false;
    out = static_cast<long long>(d);
  } else if (j.is_string()) {
    if (!text_int(j.get_ref<const std::string&>(), out)) return false;
  } else {
    return false;
  }
  return out >= 0 && out <= max;
}

// two() / digits read fixed-width numbers of an ISO date-time.
bool fixed(std::string_view text, std::size_t& pos, std::size_t width, int& out) {
  if (pos + width > text.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += width;
  return true;
}

}  // namespace

std::optional<Timestamp> parse_iso8601(std::string_view t) {
  std::size_t pos = 0;
  int y = 0;
  int mo = 0;
  int d = 0;
  int h = 0;
  int mi = 0;
  int s = 0;
  if (!fixed(t, pos, 4, y) || pos >= t.size() || t[pos++] != '-' || !fixed(t, pos, 2, mo) || pos >= t.size() ||
      t[pos++] != '-' || !fixed(t, pos, 2, d)) {
    return std::nullopt;
  }
  if (pos >= t.size() || (t[pos] != 'T' && t[pos] != 't' && t[pos] != ' ')) return std::nullopt;
  ++pos;
  if (!fixed(t, pos, 2, h) || pos >= t.size() || t[pos++] != ':' || !fixed(t, pos, 2, mi)) return std::nullopt;
  long long ms = 0;
  if (pos < t.size() && t[pos] == ':') {
    ++pos;
    if (!fixed(t, pos, 2, s)) return std::nullopt;
    if (pos < t.size() && (t[pos] == '.' || t[pos] == ',')) {
      ++pos;
      const std::size_t start = pos;
      int scale = 100;
      while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
        ms += (t[pos] - '0') * scale;
        scale /= 10;
        ++pos;
      }
      if (pos == start) return std::nullopt;
    }
  }
  long long offset_min = 0;
  if (pos < t.size()) {
    const char sign = t[pos++];
    if (sign == 'Z' || sign == 'z') {
      if (pos != t.size()) return std::nullopt;
    } else if (sign == '+' || sign == '-') {
      int oh = 0;
      int om = 0;
      if (!fixed(t, pos, 2, oh)) return std::nullopt;
      if (pos < t.size() && t[pos] == ':') ++pos;
      if (pos < t.size() && !fixed(t, pos, 2, om)) return std::nullopt;
      if (pos != t.size() || oh > 23 || om > 59) return std::nullopt;
      offset_min = (sign == '-' ? -1 : 1) * (oh * 60 + om);
    } else {
      return std::nullopt;
    }
  }
  if (h > 23 || mi > 59 || s > 59) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year(y), std::chrono::month(static_cast<unsigned>(mo)),
                                        std::chrono::day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return std::nullopt;
  const auto days = std::chrono::sys_days(ymd);
  const auto local = std::chrono::time_point_cast<milliseconds>(days) + std::chrono::hours(h) +
                     std::chrono::minutes(mi) + std::chrono::seconds(s) + milliseconds(ms);
  return Timestamp(local - std::chrono::minutes(offset_min));
}

std::string format_iso8601(Timestamp time) {
  const auto day = std::chrono::floor<std::chrono::days>(time);
  const std::chrono::year_month_day ymd(day);
  const long long in_day = (time - day).count();
  char buf[48];
  const int n =
      std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%03lld+00:00", static_cast<int>(ymd.year()),
                    static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), in_day / 3'600'000,
                    in_day / 60'000 % 60, in_day / 1000 % 60, in_day % 1000);
  return std::string(buf, static_cast<std::size_t>(std::max(n, 0)));
}

Result<DecodedRecord> decode_json_record(std::string_view key, std::string_view value,
                                         std::optional<long long> expire_at_ms, const LegacyPolicy& policy) {
  auto corrupt = [&](std::string_view why) {
    return Error(ErrorCode::kCorrupt, "redis: the value at '" + std::string(key) +
                                          "' is neither an Idem record nor one of the original module: " +
                                          std::string(why) + "; left as it is");
  };
  Scanner sc(value);
  std::vector<std::pair<std::string_view, std::string_view>> raw;
  if (!sc.members(0, &raw) || !sc.at_end()) return corrupt("not a complete JSON object");
  // Members by name; the last of a repeated name wins, as in Python.
  struct Member {
    std::string_view name;
    std::string_view text;
  };
  std::vector<std::string> names;
  names.reserve(raw.size());
  for (const auto& member : raw) {
    const Json name = parse(member.first);
    if (!name.is_string()) return corrupt("a member name is not UTF-8");
    names.push_back(name.get<std::string>());
  }
  std::vector<Member> members;
  members.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) members.push_back(Member{names[i], raw[i].second});
  auto find = [&](std::string_view name) -> std::optional<std::string_view> {
    for (auto it = members.rbegin(); it != members.rend(); ++it) {
      if (it->name == name) return it->text;
    }
    return std::nullopt;
  };
  auto member = [&](std::string_view name) -> Json {
    const auto text = find(name);
    return text ? parse(*text) : Json();
  };
  auto string_member = [&](std::string_view name, std::string& out) {
    const Json j = member(name);
    if (j.is_null()) return true;  // absent or null: empty
    if (!j.is_string()) return false;
    out = j.get<std::string>();
    return true;
  };

  DecodedRecord out;
  out.json = true;
  IdempotencyRecord& rec = out.record;
  rec.idempotency_key = std::string(key);
  const Json status = member("status");
  if (!status.is_string()) return corrupt("no status");
  if (status == "PROCESSING") {
    rec.status = ProcessingStatus::kProcessing;
  } else if (status == "COMPLETED") {
    rec.status = ProcessingStatus::kCompleted;
  } else if (status == "FAILED") {
    rec.status = ProcessingStatus::kFailed;
  } else {
    return corrupt("unknown status");
  }
  if (!string_member("event_id", rec.event_id) || !string_member("event_type", rec.event_type)) {
    return corrupt("event_id or event_type is not a string");
  }
  const Json first = member("first_seen_at");
  std::optional<Timestamp> first_seen;
  if (first.is_string()) first_seen = parse_iso8601(first.get_ref<const std::string&>());
  if (!first_seen || first_seen->time_since_epoch().count() < 0 || first_seen->time_since_epoch().count() > kMaxIsoMs) {
    return corrupt("first_seen_at is not an ISO 8601 date-time");
  }
  rec.first_seen_at = *first_seen;
  const Json completed = member("completed_at");
  if (!completed.is_null()) {
    std::optional<Timestamp> at;
    if (completed.is_string()) at = parse_iso8601(completed.get_ref<const std::string&>());
    if (!at || at->time_since_epoch().count() < 0 || at->time_since_epoch().count() > kMaxIsoMs) {
      return corrupt("completed_at is not an ISO 8601 date-time");
    }
    rec.completed_at = *at;
  }
  // The error: "error_base64" (ours) is exact; "error" may be lossy.
  const Json error = member("error");
  if (!error.is_null() && !error.is_string()) return corrupt("error is not a string");
  if (error.is_string()) rec.error = error.get<std::string>();
  if (const Json exact = member("error_base64"); !exact.is_null()) {
    std::optional<std::string> bytes;
    if (exact.is_string()) bytes = unbase64(exact.get_ref<const std::string&>());
    if (!bytes) return corrupt("error_base64 is not base64");
    rec.error = std::move(*bytes);
  }

  const bool legacy = !find("token").has_value();
  // The result: a wrapped value is unwrapped; an object is kept as its very
  // text (Idem's) or as compact JSON (the original module's).
  if (const auto text = find("result"); text && *text != "null") {
    Scanner inner(*text);
    std::vector<std::pair<std::string_view, std::string_view>> wrapper;
    if (text->front() == '{' && inner.members(0, &wrapper) && wrapper.size() == 1) {
      const Json name = parse(wrapper[0].first);
      const Json v = parse(wrapper[0].second);
      if (name == "idem_value" && v.is_string()) {
        rec.result = v.get<std::string>();
      } else if (name == "idem_base64" && v.is_string()) {
        rec.result = unbase64(v.get_ref<const std::string&>());
        if (!rec.result) return corrupt("idem_base64 is not base64");
      }
    }
    if (!rec.result) {
      if (!valid_json(*text)) return corrupt("result is not valid JSON");
      if (legacy) {
        const auto j = nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) return corrupt("result is not valid JSON");
        rec.result = j.dump();
      } else {
        rec.result = std::string(*text);
      }
    }
  }

  if (legacy) {
    if (!policy.read_legacy) {
      return corrupt("a record of the original module, and reading those is off (legacy=0)");
    }
    out.legacy = true;
    rec.token = 0;
    rec.attempt = 1;
    rec.retryable = true;
    const Timestamp ended = rec.completed_at.value_or(rec.first_seen_at);
    rec.lease_expires_at = rec.status == ProcessingStatus::kProcessing ? rec.first_seen_at + policy.lease : ended;
    if (expire_at_ms) {
      rec.expires_at = *expire_at_ms >= 0 ? Timestamp(milliseconds(std::min(*expire_at_ms, kMaxMs))) : Timestamp::max();
    } else {
      out.expiry_known = false;
      rec.expires_at = ended + kLegacyTtl;
    }
    return out;
  }

  long long token = 0;
  long long attempt = 0;
  long long lease = 0;
  long long expires = 0;
  if (!integer(member("token"), token, kMaxToken) || token == 0) return corrupt("bad token");
  if (!integer(member("attempt"), attempt, UINT32_MAX)) return corrupt("bad attempt");
  if (!integer(member("lease_expires_at_ms"), lease, kMaxMs)) return corrupt("bad lease_expires_at_ms");
  if (!integer(member("expires_at_ms"), expires, kMaxMs)) return corrupt("bad expires_at_ms");
  rec.token = static_cast<Token>(token);
  rec.attempt = static_cast<std::uint32_t>(attempt);
  rec.lease_expires_at = Timestamp(milliseconds(lease));
  rec.expires_at = Timestamp(milliseconds(expires));
  if (!string_member("fingerprint", rec.fingerprint)) return corrupt("fingerprint is not a string");
  if (const Json r = member("retryable"); !r.is_null()) {
    if (!r.is_boolean()) return corrupt("retryable is not a boolean");
    rec.retryable = r.get<bool>();
  }
  if (const Json w = member("watched"); !w.is_null()) {
    if (!w.is_boolean()) return corrupt("watched is not a boolean");
    out.watched = w.get<bool>();
  }
  if (const Json ck = member("checkpoint"); !ck.is_null()) {
    if (!ck.is_object()) return corrupt("checkpoint is not an object");
    const auto name = ck.find("name");
    const auto data = ck.find("data");
    if (name == ck.end() || data == ck.end() || !name->is_string() || !data->is_string()) {
      return corrupt("checkpoint needs name and data strings");
    }
    Checkpoint cp{name->get<std::string>(), data->get<std::string>()};
    if (const auto b = ck.find("base64"); b != ck.end() && *b == true) {
      auto n = unbase64(cp.name);
      auto d = unbase64(cp.data);
      if (!n || !d) return corrupt("checkpoint is not base64");
      cp = Checkpoint{std::move(*n), std::move(*d)};
    }
    rec.checkpoint = std::move(cp);
  }
  return out;
}

std::string json_checkpoint(const Checkpoint& cp) {
  const auto name = json_string(cp.name);
  const auto data = json_string(cp.data);
  if (name && data) return "{\"name\":" + *name + ",\"data\":" + *data + "}";
  return "{\"base64\":true,\"name\":\"" + base64(cp.name) + "\",\"data\":\"" + base64(cp.data) + "\"}";
}

std::optional<std::string> encode_json_record(std::string_view key, const IdempotencyRecord& r) {
  if (r.expires_at == Timestamp::max() || r.token == 0 || r.token > static_cast<Token>(kMaxToken)) {
    return std::nullopt;
  }
  const auto event_id = json_string(r.event_id);
  const auto event_type = json_string(r.event_type);
  const auto fingerprint = json_string(r.fingerprint);
  if (!event_id || !event_type || !fingerprint) return std::nullopt;
  for (const Timestamp t : {r.lease_expires_at, r.expires_at}) {
    if (t.time_since_epoch().count() < 0 || t.time_since_epoch().count() > kMaxMs) return std::nullopt;
  }
  for (const Timestamp t : {r.first_seen_at, r.completed_at.value_or(Timestamp{})}) {
    if (t.time_since_epoch().count() < 0 || t.time_since_epoch().count() > kMaxIsoMs) return std::nullopt;
  }
  std::string out;
  out.reserve(320 + (r.result ? r.result->size() : 0) + (r.error ? r.error->size() : 0));
  out += "{\"idempotency_key\":";
  const std::string_view shown = model_key(key);
  std::optional<std::string> shown_json = json_string(shown);
  out += shown_json ? *shown_json : lossy_json_string(shown);
  out += ",\"event_id\":" + *event_id;
  out += ",\"event_type\":" + *event_type;
  out += ",\"status\":\"";
  out += status_name(r.status);
  out += "\",\"result\":";
  out += result_json(r.result);
  out += ',';
  append_error(out, r.error);
  out += ",\"first_seen_at\":\"" + format_iso8601(r.first_seen_at) + "\"";
  out += ",\"completed_at\":";
  out += r.completed_at ? "\"" + format_iso8601(*r.completed_at) + "\"" : std::string("null");
  out += ",\"token\":\"";
  append_decimal(out, static_cast<std::uint64_t>(r.token));
  out += "\",\"attempt\":";
  append_decimal(out, static_cast<std::uint64_t>(r.attempt));
  out += ",\"lease_expires_at_ms\":";
  append_decimal(out, static_cast<std::int64_t>(r.lease_expires_at.time_since_epoch().count()));
  out += ",\"expires_at_ms\":";
  append_decimal(out, static_cast<std::int64_t>(r.expires_at.time_since_epoch().count()));
  out += ",\"fingerprint\":" + *fingerprint;
  out += r.retryable ? ",\"retryable\":true" : ",\"retryable\":false";
  out += ",\"checkpoint\":";
  out += r.checkpoint ? json_checkpoint(*r.checkpoint) : std::string("null");
  out += '}';
  return out;
}

bool json_claimable(const ClaimRequest& r) {
  return utf8_valid(r.event_id) && utf8_valid(r.event_type) && utf8_valid(r.fingerprint);
}

std::optional<NewClaim> new_json_claim(const ClaimRequest& request, Token token) {
  const long long first = static_cast<long long>(token / 1000);
  IdempotencyRecord r;
  r.event_id = std::string(request.event_id);
  r.event_type = std::string(request.event_type);
  r.fingerprint = std::string(request.fingerprint);
  r.status = ProcessingStatus::kProcessing;
  r.token = token;
  r.attempt = 1;
  r.first_seen_at = Timestamp(milliseconds(first));
  r.lease_expires_at = r.first_seen_at + request.lease;
  r.expires_at = r.first_seen_at + std::max(request.ttl, request.lease);
  std::optional<std::string> value = encode_json_record(request.key, r);
  if (!value) return std::nullopt;
  return NewClaim{std::move(*value), r.expires_at.time_since_epoch().count(), r.lease_expires_at};
}

std::optional<std::pair<std::string, long long>> finish_json_record(std::string_view key, std::string_view claimed,
                                                                    char status, std::string_view value, Timestamp now,
                                                                    std::chrono::milliseconds ttl) {
  Result<DecodedRecord> d = decode_json_record(key, claimed, std::nullopt, LegacyPolicy{});
  if (!d || d->legacy || d->record.status != ProcessingStatus::kProcessing) return std::nullopt;
  IdempotencyRecord& r = d->record;
  const Timestamp done = std::max(now, r.first_seen_at);
  r.status = status == 'C' ? ProcessingStatus::kCompleted : ProcessingStatus::kFailed;
  r.retryable = status != 'X';
  r.result.reset();
  r.error.reset();
  if (status == 'C') {
    r.result = std::string(value);
  } else {
    r.error = std::string(value);
  }
  r.completed_at = done;
  r.lease_expires_at = done;
  r.expires_at = done + ttl;
  std::optional<std::string> out = encode_json_record(key, r);
  if (!out) return std::nullopt;
  return std::make_pair(std::move(*out), r.expires_at.time_since_epoch().count());
}

std::string finish_json_fields(char status, std::string_view value) {
  std::string out = "\"result\":";
  if (status == 'C') {
    out += result_json(std::string(value));
    out += ",\"error\":null";
  } else {
    out += "null,";
    append_error(out, std::string(value));
  }
  return out;
}

}  // namespace idem::redis_detail
