#include "core/fingerprint.h"

#include <openssl/evp.h>

#include <charconv>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace idem::detail {
namespace {

using Json = nlohmann::json;

// The same bound as Envelope::parse(): deeper text is treated as hostile and
// hashed as written.
constexpr int kMaxNestingDepth = 64;

// Bytes that stand for themselves inside a canonical string: printable
// ASCII except the quote and the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return plain;
}();

// One pass over the text, proving it canonical or giving up (see the header).
// Giving up is always safe: the caller then parses and dumps.
class CanonicalScan {
 public:
  explicit CanonicalScan(std::string_view text) noexcept : s_(text) {}

  bool run() noexcept { return value(0) && i_ == s_.size(); }

 private:
  int peek() const noexcept { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : -1; }
  unsigned char at(std::size_t i) const noexcept { return i < s_.size() ? static_cast<unsigned char>(s_[i]) : 0; }
  bool eat(char c) noexcept {
    if (peek() != static_cast<unsigned char>(c)) return false;
    ++i_;
    return true;
  }

  bool value(int depth) noexcept {
    switch (peek()) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': {
        bool escaped = false;
        std::string_view ignored;
        return string(ignored, escaped);
      }
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }

  bool object(int depth) noexcept {
    if (depth > kMaxNestingDepth) return false;
    ++i_;
    if (eat('}')) return true;
    std::string_view previous;
    for (bool first = true;; first = false) {
      std::string_view key;
      bool escaped = false;
      if (peek() != '"' || !string(key, escaped)) return false;
      // dump() writes keys in std::map order, which compares the decoded
      // bytes; without escapes those are the raw bytes. Duplicates (which
      // parse() collapses) fail the strict order too.
      if (escaped || (!first && !(previous < key))) return false;
      previous = key;
      if (!eat(':') || !value(depth)) return false;
      if (eat(',')) continue;
      return eat('}');
    }
  }

  bool array(int depth) noexcept {
    if (depth > kMaxNestingDepth) return false;
    ++i_;
    if (eat(']')) return true;
    for (;;) {
      if (!value(depth)) return false;
      if (eat(',')) continue;
      return eat(']');
    }
  }

  bool literal(std::string_view word) noexcept {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  static bool continuation(unsigned char c) noexcept { return c >= 0x80 && c <= 0xBF; }
  static bool lower_hex(unsigned char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
  static unsigned hex_value(unsigned char c) noexcept {
    return c <= '9' ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(c - 'a' + 10);
  }

  // A string exactly as dump() escapes it: only \" \\ \b \f \n \r \t and
  // \u00xx (lower-case) for the other control characters; everything else
  // raw, as well-formed UTF-8 (parse() rejects ill-formed UTF-8).
  bool string(std::string_view& content, bool& escaped) noexcept {
    ++i_;  // the opening quote
    const std::size_t start = i_;
    for (;;) {
      // Most bytes are printable ASCII that stands for itself: skip them in
      // a tight loop.
      while (i_ < s_.size() && kPlain[static_cast<unsigned char>(s_[i_])]) ++i_;
      const int c = peek();
      if (c < 0) return false;
      if (c == '"') {
        content = s_.substr(start, i_ - start);
        ++i_;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        const unsigned char e = at(i_ + 1);
        if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
          i_ += 2;
          continue;
        }
        if (e != 'u' || at(i_ + 2) != '0' || at(i_ + 3) != '0' || !lower_hex(at(i_ + 4)) || !lower_hex(at(i_ + 5))) {
          return false;
        }
        const unsigned code = hex_value(at(i_ + 4)) * 16 + hex_value(at(i_ + 5));
        if (code >= 0x20 || code == 0x08 || code == 0x09 || code == 0x0A || code == 0x0C || code == 0x0D) return false;
        i_ += 6;
        continue;
      }
      if (c < 0x20) return false;  // a raw control character is not JSON
      if (c < 0x80) {
        ++i_;
        continue;
      }
      if (!utf8_sequence(static_cast<unsigned char>(c))) return false;
    }
  }

  // One well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
  // surrogates, nothing above U+10FFFF) starting with `lead`.
  bool utf8_sequence(unsigned char lead) noexcept {
    const unsigned char b1 = at(i_ + 1);
    const unsigned char b2 = at(i_ + 2);
    const unsigned char b3 = at(i_ + 3);
    std::size_t length = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = continuation(b1) ? 2 : 0;
    } else if (lead == 0xE0) {
      length = (b1 >= 0xA0 && b1 <= 0xBF && continuation(b2)) ? 3 : 0;
    } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
      length = (continuation(b1) && continuation(b2)) ? 3 : 0;
    } else if (lead == 0xED) {
      length = (b1 >= 0x80 && b1 <= 0x9F && continuation(b2)) ? 3 : 0;
    } else if (lead == 0xF0) {
      length = (b1 >= 0x90 && b1 <= 0xBF && continuation(b2) && continuation(b3)) ? 4 : 0;
    } else if (lead >= 0xF1 && lead <= 0xF3) {
      length = (continuation(b1) && continuation(b2) && continuation(b3)) ? 4 : 0;
    } else if (lead == 0xF4) {
      length = (b1 >= 0x80 && b1 <= 0x8F && continuation(b2) && continuation(b3)) ? 4 : 0;
    }
    if (length == 0 || i_ + length > s_.size()) return false;
    i_ += length;
    return true;
  }

  static bool digit(int c) noexcept { return c >= '0' && c <= '9'; }

  bool number() noexcept {
    const std::size_t start = i_;
    (void)eat('-');
    if (eat('0')) {
      // a lone zero
    } else if (digit(peek())) {
      while (digit(peek())) ++i_;
    } else {
      return false;
    }
    const bool fraction = peek() == '.';
    if (fraction) {
      ++i_;
      if (!digit(peek())) return false;
      while (digit(peek())) ++i_;
    }
    const bool exponent = peek() == 'e' || peek() == 'E';
    if (exponent) {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!digit(peek())) return false;
      while (digit(peek())) ++i_;
    }
    const std::string_view token = s_.substr(start, i_ - start);
    if (!fraction && !exponent) {
      // parse() reads "-0" as the integer 0, and an integer that does not
      // fit 64 bits (signed when negative) as a double.
      if (token == "-0") return false;
      const char* const last = token.data() + token.size();
      if (token[0] == '-') {
        std::int64_t value = 0;
        const auto [end, ec] = std::from_chars(token.data(), last, value);
        return ec == std::errc() && end == last;
      }
      std::uint64_t value = 0;
      const auto [end, ec] = std::from_chars(token.data(), last, value);
      return ec == std::errc() && end == last;
    }
    return float_is_canonical(token);
  }

  // A floating-point number is canonical when dump() of the double it
  // parses to writes the same text ("1.5", "1e+300" and "-0.0" are; "1.50",
  // "1e300" and "1E5" are not).
  static bool float_is_canonical(std::string_view token) noexcept {
    double value = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (ec != std::errc() || end != token.data() + token.size()) return false;
    try {
      return Json(value).dump() == token;
    } catch (...) {
      return false;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// True when `json` nests at most kMaxNestingDepth arrays and objects: a
// plain scan, so that hostile text never reaches the recursive parser.
bool nesting_within_bound(std::string_view json) noexcept {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : json) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxNestingDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

struct DigestContextDeleter {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};

const EVP_MD* sha256_digest() {
  // Fetched once for the process; never freed (it lives as long as libcrypto).
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

void write_hex(const std::array<unsigned char, 32>& digest, FingerprintHex& out) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < out.size() / 2; ++i) {
    out[2 * i] = kHex[digest[i] >> 4U];
    out[2 * i + 1] = kHex[digest[i] & 0x0FU];
  }
}

}  // namespace

void sha256(std::string_view data, std::array<unsigned char, 32>& out) {
  thread_local std::unique_ptr<EVP_MD_CTX, DigestContextDeleter> ctx(EVP_MD_CTX_new());
  unsigned int length = 0;
  const EVP_MD* md = sha256_digest();
  if (md == nullptr || !ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &length) != 1 || length != out.size()) {
    // Only when libcrypto has no SHA-256 at all (a FIPS provider missing, no
    // memory): the one-shot form says why in its own error queue.
    if (EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("SHA-256 is not available from libcrypto");
    }
  }
}

bool is_canonical_json(std::string_view text) noexcept { return CanonicalScan(text).run(); }

void payload_fingerprint(std::string_view payload, FingerprintHex& out) {
  std::array<unsigned char, 32> digest{};
  if (is_canonical_json(payload)) {
    sha256(payload, digest);
  } else if (nesting_within_bound(payload)) {
    // Hash the canonical form whatever way the payload was written: a
    // hand-written `{ "a": 1 }` and the parsed `{"a":1}` are the same
    // payload, and a spurious kMismatch between them would refuse a
    // legitimate redelivery.
    const Json value = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
      sha256(payload, digest);
    } else {
      sha256(value.dump(-1, ' ', false, Json::error_handler_t::replace), digest);
    }
  } else {
    sha256(payload, digest);  // absurdly deep: hashed as written
  }
  write_hex(digest, out);
}

}  // namespace idem::detail
