// Example 5: custom keys. What a record is stored under is
//   prefix + scope + ":" + idempotency key
// and each part can be chosen: a scope per handler, a key extractor that
// derives the key from the event's content, and hashing, so that keys made
// of personal data (an e-mail address) never reach the store in clear.
//
//   example_custom_keys                       # a temporary SQLite file
//   example_custom_keys redis://127.0.0.1:6379
#include <cstdio>
#include <string>

#include "common/example.h"

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 5: custom keys (scope, key extractor, hashed personal data)");
  auto checker = run.checker();

  std::printf("1. scope: each handler processes an event once, independently\n");
  int invoices = 0;
  int emails = 0;
  auto invoice = idem::idempotent_event_handler([&](const idem::Envelope&) { return std::to_string(++invoices); },
                                                {.processor = {.scope = "invoicing"}, .checker = checker});
  auto email = idem::idempotent_event_handler([&](const idem::Envelope&) { return std::to_string(++emails); },
                                              {.processor = {.scope = "email"}, .checker = checker});
  const auto paid = example::event("evt-1", "order.paid", R"({"order":"A-1"})");
  for (int delivery = 0; delivery < 2; ++delivery) {
    (void)invoice(paid);
    (void)email(paid);
  }
  std::printf("  two deliveries: invoicing ran %d time(s), email ran %d time(s)\n", invoices, emails);
  std::printf("  keys: %s and %s\n",
              checker->key_for(paid, {.prefix = "<prefix>", .scope = "invoicing"}).value().c_str(),
              checker->key_for(paid, {.prefix = "<prefix>", .scope = "email"}).value().c_str());
  run.check(invoices == 1 && emails == 1, "each scope ran its handler exactly once for the event");

  std::printf("\n2. a key extractor: the business key instead of the event id\n");
  // A producer that retries by publishing a *new* event (new event_id) for
  // the same order. Deduplicating on event_id would ship twice; the order id
  // in the metadata is what must be unique.
  int shipments = 0;
  auto ship = idem::idempotent_event_handler(
      [&](const idem::Envelope& e) {
        ++shipments;
        return R"({"shipped":")" + e.metadata.at("order_id") + R"("})";
      },
      {.processor = {.scope = "shipping",
                     .key_extractor =
                         [](const idem::Envelope& e) {
                           auto it = e.metadata.find("order_id");
                           return it == e.metadata.end() ? std::string() : it->second;  // empty: no usable key
                         }},
       .checker = checker});
  auto first = example::event("evt-100", "shipment.requested", R"({"carrier":"ups"})");
  first.metadata["order_id"] = "A-1";
  auto retried = example::event("evt-101", "shipment.requested", R"({"carrier":"ups"})");  // another event id
  retried.metadata["order_id"] = "A-1";
  const auto r1 = ship(first);
  const auto r2 = ship(retried);
  std::printf("  evt-100 -> %s, evt-101 (same order) -> %s\n", r1.value_or("-").c_str(), r2.value_or("-").c_str());
  run.check(shipments == 1 && r1 == r2, "two events for one order shipped once: the key is the order id");
  auto no_key = example::event("evt-102", "shipment.requested");
  bool rejected = false;
  try {
    (void)ship(no_key);
  } catch (const idem::IdemError& e) {
    rejected = e.code() == idem::ErrorCode::kInvalidArgument;
    std::printf("  an event without order_id -> %s\n", e.what());
  }
  run.check(rejected && shipments == 1, "an event the extractor finds no key in is rejected, not run unprotected");

  std::printf("\n3. hashing: personal data never reaches the store\n");
  // The natural key of a newsletter sign-up is the e-mail address. With
  // hash_keys the store sees SHA-256(key) instead.
  idem::CheckerOptions hashed_options;
  hashed_options.key.hash_keys = true;
  auto hashed = run.checker(hashed_options);
  int welcomes = 0;
  auto welcome = idem::idempotent_event_handler(
      [&](const idem::Envelope&) {
        ++welcomes;
        return std::string(R"({"welcome_mail":"sent"})");
      },
      {.processor = {.scope = "newsletter"}, .checker = hashed});
  auto signup = example::event("evt-200", "newsletter.signup");
  signup.idempotency_key = "alice@example.com";
  (void)welcome(signup);
  (void)welcome(signup);
  idem::KeyOptions keys = hashed->options().key;
  keys.scope = "newsletter";
  const std::string stored_key = hashed->key_for(signup, keys).value();
  auto record = hashed->get(stored_key).value();
  std::printf("  stored under %s\n", stored_key.c_str());
  run.check(welcomes == 1 && record.has_value(), "the sign-up was processed once, under its hashed key");
  run.check(stored_key.find("alice") == std::string::npos && record &&
                record->idempotency_key.find("alice") == std::string::npos &&
                stored_key.size() - stored_key.rfind(':') - 1 == 64,
            "the address appears nowhere in the key: only its SHA-256 (64 hex digits)");

  std::printf("\n4. a key too long to store is rejected, unless hashed\n");
  auto long_key = example::event("evt-300", "report.requested");
  long_key.idempotency_key = std::string(600, 'x');  // over KeyOptions::max_key_length (512)
  const auto plain_key = checker->key_for(long_key);
  const auto hashed_key = hashed->key_for(long_key);
  std::printf("  plain: %s\n  hashed: %s\n", plain_key ? "accepted" : plain_key.error().to_string().c_str(),
              hashed_key ? hashed_key.value().c_str() : hashed_key.error().to_string().c_str());
  run.check(!plain_key && plain_key.error().code() == idem::ErrorCode::kInvalidArgument && hashed_key.ok(),
            "a 600-byte key fails with kInvalidArgument in clear, and fits once hashed");
  return run.finish();
}
