// Example 6: an idempotent NATS JetStream consumer.
//
//   nats-server -js &
//   NATS_URL=nats://127.0.0.1:4222 ./example_nats_consumer [STORE_URL]
//
// Five payment events are published three times each without Nats-Msg-Id,
// so the stream stores every copy, as at-least-once delivery would. The
// consumer runs each payment's handler once, acks the copies as duplicates,
// and dead-letters a poisoned event (a TerminalError) with the reason.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "common/example.h"
#include "idem/integrations/nats.h"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  using idem::nats::MessageOutcome;
  example::Run run(argc, argv, "Example 6: an idempotent NATS JetStream consumer");
  const char* nats_env = std::getenv("NATS_URL");
  const std::string nats_url = nats_env != nullptr && *nats_env != '\0' ? nats_env : "nats://127.0.0.1:4222";

  auto conn = idem::nats::Connection::connect({.url = nats_url, .name = "example-nats-consumer"});
  if (!conn) {
    std::fprintf(stderr, "%s\n", conn.error().to_string().c_str());
    return 2;
  }
  // A stream (and its dead-letter stream) of this run's own, so the example
  // can run again against the same server. Both survive a server restart.
  const std::string stream = "PAYMENTS_" + std::to_string(std::random_device{}() % 1'000'000);
  const std::string subject = "example." + stream + ".requested";
  idem::nats::ensure_stream(**conn, {.name = stream, .subjects = {subject}}).value();
  idem::nats::ensure_stream(**conn, {.name = stream + "_DLQ", .subjects = {"idem.dlq." + stream}}).value();

  idem::nats::Publisher publisher(*conn);
  for (int i = 1; i <= 5; ++i) {
    const idem::Envelope e =
        example::event("pay-" + std::to_string(i), i == 5 ? "payment.poisoned" : "payment.requested",
                       R"({"amount_cents":)" + std::to_string(i * 1000) + "}");
    for (int copy = 0; copy < 3; ++copy) publisher.publish_raw(subject, e.to_json()).value();
  }
  std::printf("published 5 payments x 3 copies to %s\n", subject.c_str());

  // The checker's lease is the one clock: heartbeats renew it and send
  // InProgress, and the durable consumer's AckWait is derived from it.
  auto checker = run.checker({.lease = 10s});
  std::mutex mutex;
  std::map<std::string, int> charged;
  idem::nats::ConsumerOptions options;
  options.stream = stream;
  options.durable = "billing";
  options.concurrency = 4;
  auto consumer = idem::nats::Consumer::start(*conn, checker, options, [&](idem::nats::MessageContext& ctx) {
    const idem::Envelope& event = ctx.envelope();
    if (event.event_type == "payment.poisoned") throw idem::TerminalError("unknown card scheme");
    // The side effect, guarded: it runs once per key. Pass ctx.token() to
    // downstream systems that can reject stale writers.
    std::lock_guard lock(mutex);
    ++charged[event.event_id];
    std::printf("  charging %s %s (token %llu)\n", event.event_id.c_str(), event.payload.c_str(),
                static_cast<unsigned long long>(ctx.token()));
    return std::string(R"({"charged":true})");
  });
  if (!consumer) {
    std::fprintf(stderr, "cannot start the consumer: %s\n", consumer.error().to_string().c_str());
    return 2;
  }

  // Done when all 15 messages are acked or dead-lettered (naks come back).
  auto finished = [&] {
    const auto s = (*consumer)->stats();
    return s.count(MessageOutcome::kAcked) + s.count(MessageOutcome::kAckedDuplicate) +
               s.count(MessageOutcome::kDeadLettered) >=
           15;
  };
  for (int i = 0; i < 200 && !finished(); ++i) std::this_thread::sleep_for(50ms);
  (*consumer)->stop();
  const auto stats = (*consumer)->stats();
  std::printf("\nacked %llu, duplicates %llu, in-progress naks %llu, dead-lettered %llu, handler runs %llu\n\n",
              static_cast<unsigned long long>(stats.count(MessageOutcome::kAcked)),
              static_cast<unsigned long long>(stats.count(MessageOutcome::kAckedDuplicate)),
              static_cast<unsigned long long>(stats.count(MessageOutcome::kNakInProgress)),
              static_cast<unsigned long long>(stats.count(MessageOutcome::kDeadLettered)),
              static_cast<unsigned long long>(stats.handler_runs));

  bool once = charged.size() == 4;
  for (const auto& [id, n] : charged) once = once && n == 1;
  run.check(once, "each of the 4 good payments was charged exactly once");
  run.check(stats.count(MessageOutcome::kAcked) == 4, "4 messages acked after their handler ran");
  run.check(stats.count(MessageOutcome::kAckedDuplicate) == 8, "8 copies acked as duplicates, without running");
  run.check(stats.count(MessageOutcome::kDeadLettered) == 3,
            "the poisoned payment and its 2 copies were terminated and dead-lettered");
  run.check(stats.handler_runs == 5, "5 handler runs in all (the poisoned one ran once; its copies replay)");
  std::printf("\nmetrics for this consumer (append to MetricsRegistry::render()):\n%s\n",
              (*consumer)->render_metrics().substr(0, 600).c_str());
  return run.finish();
}
