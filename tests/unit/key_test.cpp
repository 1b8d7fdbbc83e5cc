#include "idem/core/key.h"

#include <gtest/gtest.h>

namespace idem {
namespace {

Envelope envelope(std::string id, std::optional<std::string> key = std::nullopt) {
  Envelope e;
  e.event_id = std::move(id);
  e.idempotency_key = std::move(key);
  return e;
}

TEST(Key, DefaultPrefixThenKey) {
  auto key = build_key(envelope("e1"), KeyOptions{});
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, "idempotency:events:e1");
}

TEST(Key, ScopeSeparatesHandlers) {
  auto billing = build_key(envelope("e1"), KeyOptions{.scope = "billing"});
  auto email = build_key(envelope("e1"), KeyOptions{.scope = "email"});
  ASSERT_TRUE(billing && email);
  EXPECT_EQ(*billing, "idempotency:events:billing:e1");
  EXPECT_NE(*billing, *email);
}

TEST(Key, IdempotencyKeyWinsOverEventId) {
  auto key = build_key(envelope("e1", "order-9"), KeyOptions{.prefix = "p:"});
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, "p:order-9");
}

TEST(Key, HashingHidesTheKeyAndAcceptsAnyLength) {
  KeyOptions opts{.max_key_length = 8, .hash_keys = true};
  auto key = build_key(envelope("alice@example.com"), opts);
  ASSERT_TRUE(key);
  EXPECT_EQ(key->find("alice"), std::string::npos);
  EXPECT_EQ(*key, "idempotency:events:" + sha256_hex("alice@example.com"));
}

TEST(Key, TooLongEmptyAndNulAreRejected) {
  auto too_long = build_key(std::string(600, 'k'), KeyOptions{});
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(too_long.error().message().find("600 bytes"), std::string::npos);
  EXPECT_FALSE(build_key(std::string_view(""), KeyOptions{}));
  EXPECT_FALSE(build_key(std::string_view("a\0b", 3), KeyOptions{}));
}

TEST(Key, CustomExtractor) {
  KeyOptions opts{
      .extractor = [](const Envelope& e) { return e.metadata.count("order") ? e.metadata.at("order") : ""; }};
  Envelope e = envelope("e1");
  e.metadata["order"] = "o-1";
  auto key = build_key(e, opts);
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, "idempotency:events:o-1");
  auto missing = build_key(envelope("e2"), opts);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("e2"), std::string::npos);
}

}  // namespace
}  // namespace idem
