// Example 1: the wrapper. idempotent_event_handler() turns a handler into one
// that runs at most once per idempotency key; every redelivery gets the
// stored result back instead of running the side effect again.
//
//   example_wrapper                      # a temporary SQLite file
//   example_wrapper redis://127.0.0.1:6379
#include <atomic>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/example.h"

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 1: the wrapper, with duplicates replayed");
  auto checker = run.checker();

  // The side effect we must not repeat: charging a card. The counter stands
  // in for the payment provider's ledger.
  std::map<std::string, int> charges;
  int next_charge = 1;
  auto charge = idem::idempotent_event_handler(
      [&](const idem::Envelope& e) {
        const std::string id = "ch_" + std::to_string(next_charge++);
        ++charges[e.event_id];
        std::printf("    handler runs: charging for %s -> %s\n", e.event_id.c_str(), id.c_str());
        return R"({"charge":")" + id + R"("})";  // the result, stored and replayed
      },
      {.processor = {.scope = "billing"}, .checker = checker});

  // An at-least-once broker: order-1 arrives three times, order-2 twice.
  const std::vector<std::string> deliveries = {"order-1", "order-2", "order-1", "order-1", "order-2"};
  std::map<std::string, std::vector<std::string>> results;
  for (const std::string& id : deliveries) {
    const auto e = example::event(id, "payment.requested", R"({"amount_cents":1250})");
    std::optional<std::string> result = charge(e);
    std::printf("  delivery of %s -> %s\n", id.c_str(), result.value_or("(nothing)").c_str());
    results[id].push_back(result.value_or(""));
  }

  std::printf("\n");
  run.check(charges["order-1"] == 1 && charges["order-2"] == 1, "each order was charged exactly once");
  run.check(results["order-1"].size() == 3 && results["order-1"][1] == results["order-1"][0] &&
                results["order-1"][2] == results["order-1"][0] && !results["order-1"][0].empty(),
            "every redelivery of order-1 got the first delivery's result back");
  run.check(results["order-2"][1] == results["order-2"][0], "so did the redelivery of order-2");

  // skip_on_duplicate = false: the caller wants to know it was a duplicate.
  auto strict = idem::idempotent_event_handler(
      [&](const idem::Envelope&) {
        ++charges["strict"];
        return std::string("{}");
      },
      {.processor = {.scope = "billing"}, .skip_on_duplicate = false, .checker = checker});
  bool told = false;
  try {
    (void)strict(example::event("order-1", "payment.requested", R"({"amount_cents":1250})"));
  } catch (const idem::DuplicateEventError& duplicate) {
    told = duplicate.cached_result().has_value() && *duplicate.cached_result() == results["order-1"][0];
    std::printf("  skip_on_duplicate=false: DuplicateEventError (%s), cached result %s\n",
                std::string(idem::to_string(duplicate.status())).c_str(),
                duplicate.cached_result().value_or("-").c_str());
  }
  run.check(told && charges["strict"] == 0, "with skip_on_duplicate=false a duplicate throws, carrying the result");

  // Scopes are per handler: a receipt handler processes the same event once
  // on its own, regardless of billing having done so.
  int receipts = 0;
  auto receipt = idem::idempotent_event_handler(
      [&](const idem::Envelope&) {
        ++receipts;
        return std::string(R"({"sent":true})");
      },
      {.processor = {.scope = "receipts"}, .checker = checker});
  for (int i = 0; i < 2; ++i) (void)receipt(example::event("order-1", "payment.requested", R"({"amount_cents":1250})"));
  run.check(receipts == 1, "another scope ran its own handler once for the same event");
  return run.finish();
}
