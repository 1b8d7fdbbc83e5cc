// idem::http pieces that need no server: the Idempotency-Key parser, the
// stored response encoding, fingerprints and RFC 9457 documents.
#include "idem/integrations/http.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

namespace {

using idem::ErrorCode;
using idem::http::parse_idempotency_key;
using idem::http::StoredResponse;

// --- parse_idempotency_key ---------------------------------------------------

TEST(IdempotencyKeyHeader, BareAndQuotedFormsGiveTheSameKey) {
  EXPECT_EQ(parse_idempotency_key("8e03978e-40d5-43e8-bc93-6894a57f9324").value(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324");
  EXPECT_EQ(parse_idempotency_key(R"("8e03978e-40d5")").value(), "8e03978e-40d5");
  EXPECT_EQ(parse_idempotency_key("  \tabc \t").value(), "abc");
  EXPECT_EQ(parse_idempotency_key(R"(  "abc"  )").value(), "abc");
  EXPECT_EQ(parse_idempotency_key(R"("a \"quoted\" \\ key")").value(), R"(a "quoted" \ key)");
  EXPECT_EQ(parse_idempotency_key("a b").value(), "a b");
  EXPECT_EQ(parse_idempotency_key(R"(" spaced ")").value(), " spaced ");
}

TEST(IdempotencyKeyHeader, RejectsEmptyLongAndMalformedKeys) {
  struct Case {
    std::string value;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"   ", "empty"},
      {R"("")", "empty"},
      {R"("abc)", "closing"},
      {R"("abc"x)", "after the quoted key"},
      {R"("abc";p=1)", "after the quoted key"},
      {R"("a\bc")", "backslash"},
      {"abc\x01", "visible ASCII"},
      {"caf\xc3\xa9", "visible ASCII"},
      {std::string("a\0b", 3), "visible ASCII"},
      {"\"a\tb\"", "visible ASCII"},
      {std::string(256, 'k'), "256 bytes"},
  };
  for (const Case& c : cases) {
    auto key = parse_idempotency_key(c.value);
    ASSERT_FALSE(key.ok()) << "accepted: " << c.value;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(key.error().message().find(c.message_part), std::string::npos) << key.error().message();
  }
  EXPECT_TRUE(parse_idempotency_key(std::string(255, 'k')).ok());
  EXPECT_TRUE(parse_idempotency_key(std::string(300, 'k'), 0).ok()) << "0 means no limit";
  EXPECT_FALSE(parse_idempotency_key("abcd", 3).ok());
}

// --- StoredResponse ------------------------------------------------------------

TEST(StoredResponse, RoundTripsTextAndBinaryExactly) {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  const std::vector<std::string> bodies = {"",
                                           R"({"id":"pay_1","amount":1250})",
                                           "caf\xc3\xa9 \xf0\x9f\x92\xb6",
                                           binary,
                                           std::string("nul\0inside", 10),
                                           "\xed\xa0\x80 (a surrogate)",
                                           "\xc0\xaf (overlong)",
                                           "\xf4\x90\x80\x80 (past U+10FFFF)",
                                           "truncated \xe2\x82"};
  for (const std::string& body : bodies) {
    StoredResponse in{.status = 201,
                      .headers = {{"Content-Type", "application/octet-stream"},
                                  {"Location", "/payments/pay_1"},
                                  {"X-Tag", "a"},
                                  {"X-Tag", "b"},
                                  {"X-Raw", "\xff\xfe"}},
                      .body = body};
    const std::string text = in.encode();
    EXPECT_EQ(text.find('\0'), std::string::npos) << "the encoding must be text";
    EXPECT_TRUE(nlohmann::json::accept(text)) << text;
    auto out = StoredResponse::decode(text);
    ASSERT_TRUE(out.ok()) << out.error().to_string() << " for " << text;
    EXPECT_EQ(out->status, 201);
    EXPECT_EQ(out->headers, in.headers);
    EXPECT_EQ(out->body, body);
  }
}

TEST(StoredResponse, ReadableJsonBodiesStayReadable) {
  StoredResponse in{.status = 200, .headers = {}, .body = R"({"ok":true})"};
  EXPECT_EQ(in.encode(), R"({"body":"{\"ok\":true}","headers":[],"http":1,"status":200})");
}

TEST(StoredResponse, DecodeRejectsWhatItDidNotWrite) {
  for (const std::string text :
       {"", "null", "[]", "{}", R"({"http":2,"status":200,"headers":[],"body":""})",
        R"({"http":1,"status":"200","headers":[],"body":""})", R"({"http":1,"status":42,"headers":[],"body":""})",
        R"({"http":1,"status":200,"headers":{},"body":""})", R"({"http":1,"status":200,"headers":[["a"]],"body":""})",
        R"({"http":1,"status":200,"headers":[["","v"]],"body":""})", R"({"http":1,"status":200,"headers":[]})",
        R"({"http":1,"status":200,"headers":[],"body":{"b64":"***"}})",
        R"({"http":1,"status":200,"headers":[],"body":{"b64":"=="}})", R"({"charge":"ch_1"})", "not json"}) {
    auto out = StoredResponse::decode(text);
    ASSERT_FALSE(out.ok()) << "accepted: " << text;
    EXPECT_EQ(out.error().code(), ErrorCode::kCorrupt);
  }
  // Deep nesting is refused without recursion trouble.
  std::string deep = R"({"http":1,"status":200,"headers":[],"body":)" + std::string(100000, '[');
  EXPECT_FALSE(StoredResponse::decode(deep).ok());
}

// --- fingerprint ------------------------------------------------------------------

httplib::Request request(std::string method, std::string path, std::string body,
                         std::string content_type = "application/json") {
  httplib::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.body = std::move(body);
  if (!content_type.empty()) r.set_header("Content-Type", content_type);
  return r;
}

TEST(Fingerprint, JsonBodiesCompareCanonically) {
  using idem::http::fingerprint;
  const auto a = fingerprint(request("POST", "/payments", R"({"amount":1,"currency":"EUR","meta":{"b":1,"a":2}})"));
  EXPECT_EQ(a, fingerprint(request("POST", "/payments",
                                   "{ \"currency\" : \"EUR\",\n \"meta\": {\"a\":2, \"b\":1}, \"amount\": 1 }",
                                   "application/json; charset=utf-8")));
  EXPECT_EQ(a, fingerprint(request("POST", "/payments", R"({"currency":"EUR","meta":{"a":2,"b":1},"amount":1})",
                                   "application/vnd.api+json")));
  EXPECT_NE(a, fingerprint(request("POST", "/payments", R"({"amount":2,"currency":"EUR","meta":{"b":1,"a":2}})")));
  EXPECT_NE(a, fingerprint(request("PUT", "/payments", R"({"amount":1,"currency":"EUR","meta":{"b":1,"a":2}})")));
  EXPECT_NE(a, fingerprint(request("POST", "/refunds", R"({"amount":1,"currency":"EUR","meta":{"b":1,"a":2}})")));
  EXPECT_EQ(a.size(), 64u);
}

TEST(Fingerprint, OtherBodiesCompareByteForByte) {
  using idem::http::fingerprint;
  EXPECT_NE(fingerprint(request("POST", "/p", "a=1&b=2", "application/x-www-form-urlencoded")),
            fingerprint(request("POST", "/p", "b=2&a=1", "application/x-www-form-urlencoded")));
  EXPECT_NE(fingerprint(request("POST", "/p", R"({"a":1, "b":2})", "")),
            fingerprint(request("POST", "/p", R"({"b":2, "a":1})", "")));
  // Invalid JSON under a JSON type is still compared, as bytes.
  EXPECT_NE(fingerprint(request("POST", "/p", "{bad")), fingerprint(request("POST", "/p", "{bad ")));
  const std::string deep(100000, '[');
  EXPECT_EQ(fingerprint(request("POST", "/p", deep)), fingerprint(request("POST", "/p", deep)));
}

TEST(Fingerprint, IgnoredFieldsQueryAndHeaders) {
  using idem::http::fingerprint;
  idem::http::FingerprintOptions ignore{.ignore_json_fields = {"/sent_at", "/meta/trace", "/list/0", "/absent/x"}};
  EXPECT_EQ(
      fingerprint(request("POST", "/p", R"({"a":1,"sent_at":"t1","meta":{"trace":"x","k":1},"list":[1]})"), ignore),
      fingerprint(request("POST", "/p", R"({"a":1,"sent_at":"t2","meta":{"trace":"y","k":1},"list":[1]})"), ignore));
  EXPECT_NE(fingerprint(request("POST", "/p", R"({"a":1,"list":[1]})"), ignore),
            fingerprint(request("POST", "/p", R"({"a":1,"list":[2]})"), ignore))
      << "array elements are never removed";
  EXPECT_THROW(fingerprint(request("POST", "/p", "{}"), {.ignore_json_fields = {"no-slash"}}),
               idem::ConfigurationError);

  auto q1 = request("POST", "/p", "{}");
  q1.params = {{"b", "2"}, {"a", "1"}};
  auto q2 = request("POST", "/p", "{}");
  q2.params = {{"a", "1"}, {"b", "2"}};
  auto q3 = request("POST", "/p", "{}");
  q3.params = {{"a", "1"}};
  EXPECT_EQ(fingerprint(q1), fingerprint(q2));
  EXPECT_NE(fingerprint(q1), fingerprint(q3));
  EXPECT_EQ(fingerprint(q1, {.include_query = false}), fingerprint(q3, {.include_query = false}));

  auto h1 = request("POST", "/p", "{}");
  h1.set_header("X-Api-Version", "2024-01");
  h1.set_header("User-Agent", "a");
  auto h2 = request("POST", "/p", "{}");
  h2.set_header("x-api-version", "2025-01");
  h2.set_header("User-Agent", "b");
  EXPECT_EQ(fingerprint(h1), fingerprint(h2)) << "headers are ignored unless listed";
  EXPECT_NE(fingerprint(h1, {.include_headers = {"X-API-Version"}}),
            fingerprint(h2, {.include_headers = {"X-API-Version"}}));

  const idem::http::FingerprintOptions custom{.custom = [](const httplib::Request& r) { return r.body.substr(0, 3); }};
  EXPECT_EQ(fingerprint(request("POST", "/p", "abcX"), custom), fingerprint(request("POST", "/p", "abcY"), custom));
  EXPECT_NE(fingerprint(request("POST", "/p", "abcX"), custom), fingerprint(request("POST", "/q", "abcX"), custom));
}

// --- Problem ------------------------------------------------------------------------

TEST(Problem, WritesRfc9457Members) {
  idem::http::Problem p{.status = 409,
                        .type = std::string(idem::http::problem::kKeyInUse),
                        .title = "busy",
                        .detail = "retry",
                        .extensions = {{"key", "k1"}, {"status", "ignored: standard members win"}}};
  const auto doc = nlohmann::json::parse(p.to_json("tag:example.com,2025:"));
  EXPECT_EQ(doc["type"], "tag:example.com,2025:idempotency-key-in-use");
  EXPECT_EQ(doc["title"], "busy");
  EXPECT_EQ(doc["status"], 409);
  EXPECT_EQ(doc["detail"], "retry");
  EXPECT_EQ(doc["key"], "k1");
  EXPECT_EQ(
      nlohmann::json::parse(idem::http::Problem{.status = 400, .type = "https://x.test/p"}.to_json("base:"))["type"],
      "https://x.test/p");
  EXPECT_EQ(nlohmann::json::parse(idem::http::Problem{}.to_json())["type"], "about:blank");
  // Client input quoted in a detail may be invalid UTF-8: still a valid document.
  EXPECT_TRUE(nlohmann::json::accept(idem::http::invalid_request("bad \xff field").to_json()));

  httplib::Response response;
  idem::http::write_problem(response, idem::http::invalid_request("amount"), "tag:x,2025:");
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.get_header_value("Content-Type"), "application/problem+json");
  EXPECT_EQ(nlohmann::json::parse(response.body)["type"], "tag:x,2025:invalid-request");
}

}  // namespace
