// Example 2: errors and retries. A handler error is either retryable (the
// record is marked FAILED and the next delivery runs the handler again) or
// terminal (the error is stored and replayed to every duplicate, like a
// result). The handler decides by throwing idem::TerminalError, or a
// classifier decides from the exception.
//
//   example_errors_and_retries                       # a temporary SQLite file
//   example_errors_and_retries redis://127.0.0.1:6379
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common/example.h"

namespace {

// What a client library of an HTTP API might throw.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// The custom classifier: client errors (4xx, except 429 Too Many Requests)
// will fail the same way every time, so they are terminal; server errors and
// anything else are worth another delivery.
idem::FailureKind classify_http(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const HttpError& e) {
    const bool client_error = e.status() >= 400 && e.status() < 500 && e.status() != 429;
    return client_error ? idem::FailureKind::kTerminal : idem::FailureKind::kRetryable;
  } catch (...) {
    return idem::default_failure_classifier(error);
  }
}

// Delivers `e` through `handle` and reports what the caller (a consumer
// loop) sees: the result, the handler's own exception (the first time), or
// the TerminalError that replays a stored terminal failure.
std::string deliver(const std::function<std::optional<std::string>(const idem::Envelope&)>& handle,
                    const idem::Envelope& e) {
  try {
    auto result = handle(e);
    std::printf("  delivery of %s -> result %s\n", e.event_id.c_str(), result.value_or("(none)").c_str());
    return "result " + result.value_or("");
  } catch (const idem::TerminalError& error) {
    std::printf("  delivery of %s -> TerminalError: %s\n", e.event_id.c_str(), error.what());
    return std::string("terminal ") + error.what();
  } catch (const std::exception& error) {
    std::printf("  delivery of %s -> the handler threw: %s\n", e.event_id.c_str(), error.what());
    return std::string("error ") + error.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 2: errors and retries");
  auto checker = run.checker();
  auto status_of = [&](const idem::Envelope& e, const std::string& scope) {
    idem::KeyOptions keys = checker->options().key;
    keys.scope = scope;
    auto record = checker->get(checker->key_for(e, keys).value()).value();
    if (!record) return std::string("absent");
    return std::string(idem::to_string(record->status)) +
           (record->status == idem::ProcessingStatus::kFailed ? (record->retryable ? " (retryable)" : " (terminal)")
                                                              : "") +
           ", attempt " + std::to_string(record->attempt);
  };

  // 1. A retryable failure succeeds on redelivery.
  std::printf("1. the payment gateway times out once, then answers\n");
  int gateway_calls = 0;
  auto pay = idem::idempotent_event_handler(
      [&](const idem::Envelope&) {
        if (++gateway_calls == 1) throw std::runtime_error("gateway timeout");
        return std::string(R"({"charge":"ch_7"})");
      },
      {.processor = {.scope = "payments"}, .checker = checker});
  const auto order = example::event("order-7", "payment.requested", R"({"amount_cents":990})");
  const std::string first = deliver(pay, order);
  const std::string after_failure = status_of(order, "payments");
  std::printf("  record: %s\n", after_failure.c_str());
  const std::string second = deliver(pay, order);
  const std::string third = deliver(pay, order);
  run.check(first == "error gateway timeout" && after_failure == "FAILED (retryable), attempt 1",
            "the failure reached the caller and left the record FAILED, retryable");
  run.check(second == R"(result {"charge":"ch_7"})" && status_of(order, "payments") == "COMPLETED, attempt 2",
            "the redelivery ran the handler again (attempt 2) and succeeded");
  run.check(third == second && gateway_calls == 2, "the next redelivery got the result without calling the gateway");

  // 2. A terminal failure is stored and replayed to duplicates.
  std::printf("\n2. the card is declined: retrying will not help\n");
  int declines = 0;
  auto charge = idem::idempotent_event_handler(
      [&](const idem::Envelope&) -> std::string {
        ++declines;
        throw idem::TerminalError("card declined: insufficient funds");
      },
      {.processor = {.scope = "cards"}, .checker = checker});
  const auto declined = example::event("order-8", "payment.requested", R"({"amount_cents":120000})");
  const std::string d1 = deliver(charge, declined);
  const std::string d2 = deliver(charge, declined);
  std::printf("  record: %s\n", status_of(declined, "cards").c_str());
  run.check(d1 == "terminal card declined: insufficient funds" && d2 == d1,
            "the duplicate got the same TerminalError, replayed from the store");
  run.check(declines == 1 && status_of(declined, "cards") == "FAILED (terminal), attempt 1",
            "the handler ran once; the record is FAILED, terminal");

  // 3. A custom classifier decides from the exception.
  std::printf("\n3. a classifier: HTTP 4xx is terminal, 5xx and 429 retryable\n");
  int shipping_calls = 0;
  auto ship = idem::idempotent_event_handler(
      [&](const idem::Envelope& e) -> std::string {
        ++shipping_calls;
        if (e.event_id == "order-9") throw HttpError(422, "shipping API: 422 address incomplete");
        if (shipping_calls == 2) throw HttpError(503, "shipping API: 503 unavailable");
        return R"({"label":"lbl_1"})";
      },
      {.processor = {.scope = "shipping", .classify_failure = classify_http}, .checker = checker});
  const auto bad_address = example::event("order-9", "shipment.requested", R"({"zip":""})");
  const auto good_address = example::event("order-10", "shipment.requested", R"({"zip":"75001"})");
  const std::string s1 = deliver(ship, bad_address);  // call 1: 422
  const std::string bad_record = status_of(bad_address, "shipping");
  std::printf("  record of order-9: %s\n", bad_record.c_str());
  const std::string s2 = deliver(ship, good_address);  // call 2: 503
  const std::string good_record = status_of(good_address, "shipping");
  std::printf("  record of order-10: %s\n", good_record.c_str());
  const std::string s3 = deliver(ship, bad_address);   // replayed, no call
  const std::string s4 = deliver(ship, good_address);  // call 3: ok
  run.check(s1 == "error shipping API: 422 address incomplete" && bad_record == "FAILED (terminal), attempt 1",
            "422 was classified terminal: stored as a terminal failure");
  run.check(s3 == "terminal shipping API: 422 address incomplete",
            "its redelivery got the stored error as a TerminalError, without a call");
  run.check(s2 == "error shipping API: 503 unavailable" && good_record == "FAILED (retryable), attempt 1" &&
                s4 == R"(result {"label":"lbl_1"})",
            "503 was classified retryable: the redelivery ran again and succeeded");
  run.check(shipping_calls == 3, "three calls for four deliveries");
  return run.finish();
}
