// The fast path of the payload fingerprint (issue 8 item 6): a payload that
// is already canonical is hashed as it is, without parse + dump. These tests
// hold it to the definition: for any text, the fingerprint equals the hash
// of parse(text).dump() (or of the text when it is not JSON or nests deeper
// than 64 levels), and canonical text takes the fast path.
#include "core/fingerprint.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "idem/core/envelope.h"

namespace idem {
namespace {

using Json = nlohmann::json;

// The definition, written the slow way (what Envelope did before the fast path).
std::string reference_fingerprint(const std::string& text) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
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
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  if (max_depth <= 64) {
    const Json value = Json::parse(text, nullptr, false);
    if (!value.is_discarded())
      return sha256_hex(value.dump(-1, ' ', false, Json::error_handler_t::replace)).substr(0, 32);
  }
  return sha256_hex(text).substr(0, 32);
}

std::string fast_fingerprint(const std::string& text) {
  Envelope envelope;
  envelope.payload = text;
  return envelope.payload_fingerprint();
}

TEST(Fingerprint, CanonicalTextTakesTheFastPath) {
  for (const char* text :
       {"{}", "[]", R"({"a":1,"b":[true,false,null],"c":{"d":"e"}})", R"({"amount":19.99,"n":-3,"z":0})",
        R"({"big":18446744073709551615,"e":1e+300,"min":-9223372036854775808,"neg0":-0.0,"x":1.0})",
        R"({"s":"tab\tquote\"back\\nl\n"})", R"({"ctl":"\u0001\u001f","u":"é€𝄞"})", R"({"":1,"A":2,"a":3,"é":4})",
        R"("just a string")", "42", "null"}) {
    SCOPED_TRACE(text);
    EXPECT_TRUE(detail::is_canonical_json(text));
    EXPECT_EQ(fast_fingerprint(text), reference_fingerprint(text));
    EXPECT_EQ(Json::parse(text).dump(), text) << "the test's own example is not canonical";
  }
}

TEST(Fingerprint, AnythingElseIsCanonicalizedFirst) {
  for (const char* text : {"{ }",
                           R"({"b":1,"a":2})",
                           R"({"a":1,"a":2})",
                           R"({"a" :1})",
                           R"({"x":1.50})",
                           R"({"x":1E5})",
                           R"({"x":1e300})",
                           R"({"x":-0})",
                           R"({"x":012})",
                           R"({"x":123456789012345678901})",
                           R"({"x":-9223372036854775809})",
                           R"({"s":"\/"})",
                           R"({"s":"\u0041"})",
                           R"({"s":"\u001F"})",
                           R"({"s":"\u000a"})",
                           R"({"k\"":1})",
                           "{\"s\":\"\x01\"}",
                           "{\"s\":\"\xc3\"}",
                           "{\"s\":\"\xed\xa0\x80\"}",
                           "{\"s\":\"\xc0\xaf\"}",
                           R"({"a":1} )",
                           R"({"a":1}x)",
                           R"({"a":tru})",
                           "{not json",
                           "",
                           "[1,]",
                           R"({"a":1,})",
                           "1.",
                           "-",
                           "[[[[1]]]]   "}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(detail::is_canonical_json(text));
    EXPECT_EQ(fast_fingerprint(text), reference_fingerprint(text));
  }
  // Nesting: 64 levels are canonical, 65 are hashed as written either way.
  const std::string deep64 = std::string(64, '[') + std::string(64, ']');
  const std::string deep65 = std::string(65, '[') + std::string(65, ']');
  EXPECT_TRUE(detail::is_canonical_json(deep64));
  EXPECT_FALSE(detail::is_canonical_json(deep65));
  EXPECT_EQ(fast_fingerprint(deep65), sha256_hex(deep65).substr(0, 32));
  EXPECT_EQ(fast_fingerprint(deep64), reference_fingerprint(deep64));
}

// Random JSON values, written canonically and in other ways (spaces, other
// key orders, other escapes and number forms, broken bytes): the fast
// fingerprint always agrees with the definition, and canonical text is
// always recognized.
class RandomJson {
 public:
  explicit RandomJson(std::uint64_t seed) : rng_(seed) {}

  Json value(int depth) {
    switch (pick(depth > 3 ? 5 : 7)) {
      case 0: return nullptr;
      case 1: return pick(2) == 0;
      case 2: return static_cast<std::int64_t>(rng_()) >> pick(64);
      case 3: {
        const double numbers[] = {0.5, -1.25, 19.99, 1e-7, 3.141592653589793, 1e21, -0.0, 100.0, 2.5e-308};
        return numbers[pick(9)] * (pick(3) == 0 ? static_cast<double>(pick(1000)) : 1.0);
      }
      case 4: return text();
      case 5: {
        Json array = Json::array();
        for (int i = pick(4); i > 0; --i) array.push_back(value(depth + 1));
        return array;
      }
      default: {
        Json object = Json::object();
        for (int i = pick(5); i > 0; --i) object[text()] = value(depth + 1);
        return object;
      }
    }
  }

  // Rewrites canonical text in a way that keeps it JSON but makes it
  // non-canonical (or breaks it outright).
  std::string disturb(std::string text) {
    if (text.empty()) return text;
    const std::size_t at = static_cast<std::size_t>(pick(static_cast<int>(text.size())));
    switch (pick(5)) {
      case 0: text.insert(at, " "); break;
      case 1: text.insert(at, "\n"); break;
      case 2: text[at] = static_cast<char>(rng_()); break;
      case 3: text.erase(at, 1); break;
      default: text.insert(at, "\\u00e9"); break;
    }
    return text;
  }

  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }

 private:
  std::string text() {
    static const char* const kPieces[] = {"a", "b", "key", "Z", "\"", "\\",   "\n", "\t", "\x01", "/",
                                          "é", "€", "𝄞",   " ", "0",  "\x7f", "~",  "aa", "ab",   ""};
    std::string s;
    for (int i = pick(4); i > 0; --i) s += kPieces[pick(20)];
    return s;
  }
  std::mt19937_64 rng_;
};

// Keys that need escaping are the one canonical form the scan leaves to the
// slow path (it would have to compare them decoded); real payloads' keys
// are plain.
bool has_escaped_key(const Json& value) {
  if (value.is_object()) {
    for (const auto& [key, member] : value.items()) {
      if (Json(key).dump().find('\\') != std::string::npos || has_escaped_key(member)) return true;
    }
  } else if (value.is_array()) {
    for (const Json& member : value) {
      if (has_escaped_key(member)) return true;
    }
  }
  return false;
}

TEST(Fingerprint, RandomPayloadsAgreeWithTheDefinition) {
  RandomJson random(20261128);
  for (int i = 0; i < 4000; ++i) {
    const Json value = random.value(0);
    const std::string canonical = value.dump();
    if (!has_escaped_key(value)) {
      ASSERT_TRUE(detail::is_canonical_json(canonical)) << canonical;
    }
    ASSERT_EQ(fast_fingerprint(canonical), reference_fingerprint(canonical)) << canonical;
    const std::string spaced = value.dump(random.pick(3));
    ASSERT_EQ(fast_fingerprint(spaced), reference_fingerprint(spaced)) << spaced;
    const std::string disturbed = random.disturb(canonical);
    ASSERT_EQ(fast_fingerprint(disturbed), reference_fingerprint(disturbed)) << disturbed;
  }
}

TEST(Fingerprint, Sha256MatchesTheKnownVector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace idem
