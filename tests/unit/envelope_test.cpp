#include "idem/core/envelope.h"

#include <gtest/gtest.h>

#include <string>

#include "idem/core/record.h"

namespace idem {
namespace {

TEST(Envelope, ParsesAllFields) {
  auto env = Envelope::parse(R"({"event_id":"e1","event_type":"payment.created","source":"billing",
    "occurred_at":"2026-11-28T07:49:58.123+01:00","payload":{"b":2,"a":1},
    "metadata":{"trace":"t1"},"idempotency_key":"order-7"})");
  ASSERT_TRUE(env) << env.error().to_string();
  EXPECT_EQ(env->event_id, "e1");
  EXPECT_EQ(env->event_type, "payment.created");
  EXPECT_EQ(env->source, "billing");
  EXPECT_EQ(env->occurred_at, "2026-11-28T07:49:58.123+01:00");
  EXPECT_EQ(env->payload, R"({"a":1,"b":2})");  // canonical: sorted, compact
  EXPECT_EQ(env->metadata.at("trace"), "t1");
  EXPECT_EQ(env->effective_key(), "order-7");
}

TEST(Envelope, KeyDefaultsToEventIdAndUnknownFieldsAreAccepted) {
  auto env = Envelope::parse(R"({"event_id":"e1","future_field":[1,2,3]})");
  ASSERT_TRUE(env);
  EXPECT_EQ(env->effective_key(), "e1");
  EXPECT_FALSE(env->idempotency_key);
  EXPECT_EQ(env->payload, "{}");
}

TEST(Envelope, FingerprintIgnoresFieldOrderAndWhitespace) {
  auto a = Envelope::parse(R"({"event_id":"e","payload":{"x":1,"y":[1,2]}})");
  auto b = Envelope::parse(R"({ "payload" : { "y":[1, 2], "x":1 }, "event_id":"e"})");
  auto c = Envelope::parse(R"({"event_id":"e","payload":{"x":2,"y":[1,2]}})");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->payload_fingerprint(), b->payload_fingerprint());
  EXPECT_NE(a->payload_fingerprint(), c->payload_fingerprint());
  EXPECT_EQ(a->payload_fingerprint().size(), 32U);
}

// Issue 7 item 6: however the payload was set, equal JSON is one payload.
TEST(Envelope, FingerprintOfAHandBuiltPayloadIsThatOfTheParsedOne) {
  auto parsed = Envelope::parse(R"({"event_id":"e","payload":{"a":1,"b":{"c":[1,2]}}})");
  ASSERT_TRUE(parsed);
  Envelope by_hand;
  by_hand.event_id = "e";
  by_hand.payload = "{ \"b\" : { \"c\": [1, 2] },\n  \"a\": 1 }";
  EXPECT_EQ(by_hand.payload_fingerprint(), parsed->payload_fingerprint());
  Envelope via_setter;
  ASSERT_TRUE(via_setter.set_payload_json(by_hand.payload));
  EXPECT_EQ(via_setter.payload_fingerprint(), parsed->payload_fingerprint());
  // Text that is not JSON is still fingerprinted (as written), never a crash.
  Envelope garbage;
  garbage.payload = "{not json";
  EXPECT_EQ(garbage.payload_fingerprint().size(), 32U);
  EXPECT_NE(garbage.payload_fingerprint(), parsed->payload_fingerprint());
}

TEST(Envelope, RoundTripsThroughJson) {
  auto env = Envelope::parse(R"({"event_id":"e1","event_type":"t","payload":{"k":"v"},"metadata":{"m":"n"},
    "idempotency_key":"k1","occurred_at":"2026-01-01T00:00:00Z"})");
  ASSERT_TRUE(env);
  auto again = Envelope::parse(env->to_json());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->to_json(), env->to_json());
  EXPECT_EQ(again->effective_key(), "k1");
}

struct BadInput {
  const char* json;
  const char* names;  // a fragment the error message must contain
};

class EnvelopeRejects : public ::testing::TestWithParam<BadInput> {};

TEST_P(EnvelopeRejects, WithAnErrorNamingTheField) {
  auto env = Envelope::parse(GetParam().json);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(env.error().message().find(GetParam().names), std::string::npos) << env.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, EnvelopeRejects,
    ::testing::Values(BadInput{"", "not valid JSON"}, BadInput{"{", "not valid JSON"}, BadInput{"[1,2]", "JSON object"},
                      BadInput{"{}", "event_id"}, BadInput{R"({"event_id":""})", "event_id"},
                      BadInput{R"({"event_id":5})", "event_id"},
                      BadInput{R"({"event_id":"e","payload":[1]})", "payload"},
                      BadInput{R"({"event_id":"e","payload":"x"})", "payload"},
                      BadInput{R"({"event_id":"e","metadata":{"a":1}})", "metadata.a"},
                      BadInput{R"({"event_id":"e","occurred_at":"yesterday"})", "occurred_at"},
                      BadInput{R"({"event_id":"e","occurred_at":"2026-13-01T00:00:00Z"})", "occurred_at"},
                      BadInput{R"({"event_id":"e","idempotency_key":""})", "idempotency_key"},
                      BadInput{R"({"event_id":"e","idempotency_key":7})", "idempotency_key"},
                      BadInput{R"({"event_id":"e","event_type":{}})", "event_type"},
                      BadInput{"{\"event_id\":\"\xff\"}", "not valid JSON"}));

TEST(Envelope, DeepNestingIsRejectedNotACrash) {
  std::string deep = R"({"event_id":"e","payload":{"a":)";
  for (int i = 0; i < 100000; ++i) deep += '[';
  auto env = Envelope::parse(deep);
  ASSERT_FALSE(env);
  EXPECT_EQ(env.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Rfc3339, AcceptsAndRejects) {
  EXPECT_TRUE(is_rfc3339("2026-11-28T07:49:58Z"));
  EXPECT_TRUE(is_rfc3339("2026-11-28t07:49:58.5-05:30"));
  EXPECT_FALSE(is_rfc3339("2026-11-28T07:49:58"));
  EXPECT_FALSE(is_rfc3339("2026-11-28T24:00:00Z"));
  EXPECT_FALSE(is_rfc3339("2026-11-28T07:49:58.Z"));
  EXPECT_FALSE(is_rfc3339("2026-11-28T07:49:58Zjunk"));
  EXPECT_FALSE(is_rfc3339(""));
}

TEST(Rfc3339, FormatsUtcWithMillisecondsAndParsesBack) {
  using std::chrono::milliseconds;
  EXPECT_EQ(format_rfc3339(Timestamp(milliseconds(0))), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(Timestamp(milliseconds(-1))), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339(Timestamp(milliseconds(1'764'316'198'123))), "2025-11-28T07:49:58.123Z");
  EXPECT_TRUE(is_rfc3339(format_rfc3339(Timestamp(milliseconds(1'764'316'198'123)))));
}

TEST(Sha256, KnownVector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace idem
