// The three ways to use Idem, on the embedded SQLite store in a temp file.
// Run it twice with the same argument and every handler is skipped the second
// time: the records survive the process.
//
//   ./example_quickstart /tmp/idem-quickstart.db
#include <cstdio>
#include <stdexcept>
#include <string>

#include "idem/idem.h"

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "/tmp/idem-quickstart.db";
  auto checker = idem::IdempotencyChecker::from_url("sqlite://" + path);
  if (!checker) {
    std::fprintf(stderr, "cannot open store: %s\n", checker.error().to_string().c_str());
    return 1;
  }

  auto event = idem::Envelope::parse(R"({"event_id":"evt-1","event_type":"payment.requested",
                                          "payload":{"amount_cents":1250}})");
  if (!event) {
    std::fprintf(stderr, "bad envelope: %s\n", event.error().to_string().c_str());
    return 1;
  }

  // 1. Wrapper: the handler runs at most once per key; duplicates get the
  //    cached result.
  auto charge = idem::idempotent_event_handler(
      [](const idem::Envelope& e) {
        std::printf("  charging for %s\n", e.event_id.c_str());
        return std::string(R"({"charge":"ch_1"})");
      },
      {.processor = {.scope = "charge"}, .checker = *checker});
  for (int delivery = 1; delivery <= 2; ++delivery) {
    auto result = charge(*event);
    std::printf("wrapper, delivery %d -> %s\n", delivery, result.value_or("(none)").c_str());
  }

  // 2. Guard: you decide when the work is done; leaving the scope early marks
  //    the record FAILED so the next delivery retries.
  idem::IdempotentEventProcessor processor(*checker, {.scope = "email"});
  {
    auto ctx = processor.process(*event);
    if (ctx.is_duplicate()) {
      std::printf("guard: duplicate, cached %s\n", ctx.cached_result().value_or("(none)").c_str());
    } else {
      std::printf("guard: sending receipt with fencing token %llu\n", static_cast<unsigned long long>(ctx.token()));
      ctx.mark_completed(R"({"sent":true})");
    }
  }

  // 3. Manual: claim, act, complete, with every outcome in your hands.
  idem::KeyOptions ledger_keys = (*checker)->options().key;
  ledger_keys.scope = "ledger";
  auto claim = (*checker)->claim(*event, ledger_keys);
  if (!claim) {
    std::fprintf(stderr, "store error: %s\n", claim.error().to_string().c_str());
    return 1;
  }
  if (claim->outcome.acquired()) {
    std::printf("manual: writing ledger row for %s\n", claim->key.c_str());
    if (auto done = (*checker)->mark_completed(claim->key, claim->outcome.token, R"({"row":42})"); !done) {
      std::fprintf(stderr, "could not complete: %s\n", done.error().to_string().c_str());
      return 1;
    }
  } else {
    std::printf("manual: %s (%s)\n", std::string(idem::to_string(claim->outcome.status)).c_str(), claim->key.c_str());
  }
  return 0;
}
