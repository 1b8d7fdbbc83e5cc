// An idempotent NATS JetStream consumer, end to end:
//
//   nats-server -js &                      # any JetStream server
//   ./example_nats_consumer nats://127.0.0.1:4222
//
// It creates a stream, publishes five payment events three times each
// (without Nats-Msg-Id, so the stream stores every copy, as at-least-once
// delivery would), and consumes them through Idem: each payment is "charged"
// once, the copies are acked as duplicates, and a poisoned event ends up on
// the dead-letter subject. The store is IDEM_STORE_URL (default: memory://).
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "idem/idem.h"
#include "idem/integrations/nats.h"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  const std::string url = argc > 1 ? argv[1] : "nats://127.0.0.1:4222";
  const char* store_env = std::getenv("IDEM_STORE_URL");
  const std::string store_url = store_env != nullptr ? store_env : "memory://";

  auto conn = idem::nats::Connection::connect({.url = url, .name = "example-nats-consumer"});
  if (!conn) {
    std::cerr << conn.error().to_string() << "\n";
    return 1;
  }
  // The stream and its dead-letter stream; both survive a server restart.
  idem::nats::ensure_stream(**conn, {.name = "PAYMENTS", .subjects = {"payments.>"}}).value();
  idem::nats::ensure_stream(**conn, {.name = "PAYMENTS_DLQ", .subjects = {"idem.dlq.PAYMENTS"}}).value();

  idem::nats::Publisher publisher(*conn);
  for (int i = 1; i <= 5; ++i) {
    idem::Envelope event;
    event.event_id = "pay-" + std::to_string(i);
    event.event_type = i == 5 ? "payment.poisoned" : "payment.requested";
    event.set_payload_json(R"({"amount_cents":)" + std::to_string(i * 1000) + "}").value();
    for (int copy = 0; copy < 3; ++copy) publisher.publish_raw("payments.requested", event.to_json()).value();
  }

  // The checker's lease is the one clock: heartbeats renew it and send
  // InProgress, and the durable consumer's AckWait is derived from it.
  auto checker = idem::IdempotencyChecker::from_url(store_url, {.lease = 10s}).value();
  idem::nats::ConsumerOptions options;
  options.stream = "PAYMENTS";
  options.durable = "billing";
  options.concurrency = 4;
  auto consumer = idem::nats::Consumer::start(*conn, checker, options, [](idem::nats::MessageContext& ctx) {
    const idem::Envelope& event = ctx.envelope();
    if (event.event_type == "payment.poisoned") throw idem::TerminalError("unknown card scheme");
    // The side effect, guarded: runs once per key. Pass ctx.token() to
    // downstream systems that can reject stale writers.
    std::cout << "charging " << event.event_id << " " << event.payload << " (token " << ctx.token() << ")\n";
    return std::string(R"({"charged":true})");
  });
  if (!consumer) {
    std::cerr << consumer.error().to_string() << "\n";
    return 1;
  }

  // Done when all 15 messages are acked or dead-lettered (naks come back).
  auto finished = [&] {
    const auto s = (*consumer)->stats();
    using idem::nats::MessageOutcome;
    return s.count(MessageOutcome::kAcked) + s.count(MessageOutcome::kAckedDuplicate) +
               s.count(MessageOutcome::kDeadLettered) >=
           15;
  };
  for (int i = 0; i < 100 && !finished(); ++i) std::this_thread::sleep_for(100ms);
  (*consumer)->stop();
  const auto stats = (*consumer)->stats();
  std::cout << "acked " << stats.count(idem::nats::MessageOutcome::kAcked) << ", duplicates "
            << stats.count(idem::nats::MessageOutcome::kAckedDuplicate) << ", dead-lettered "
            << stats.count(idem::nats::MessageOutcome::kDeadLettered) << ", handler runs " << stats.handler_runs
            << "\n\n"
            << (*consumer)->render_metrics();
  return 0;
}
