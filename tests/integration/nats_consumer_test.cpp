// The NATS consumer against a real nats-server -js: duplicates, in-progress
// copies, heartbeats, dead letters, store outages and a server restart.
// Timings are short (leases of a second or two) to keep the suite fast.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/core/tracing.h"
#include "idem/integrations/nats.h"
#include "idem/stores/memory.h"
#include "integration/nats_support.h"
#include "support/nats_server.h"
#include "support/recording_tracer.h"

namespace {

using namespace std::chrono_literals;
using idem::Envelope;
using idem::nats::Connection;
using idem::nats::Consumer;
using idem::nats::ConsumerOptions;
using idem::nats::MessageContext;
using idem::nats::MessageOutcome;
using idem::nats::MessageReport;
using idem::test::slurp;
using idem::test::wait_until;

std::string envelope_json(const std::string& id, const std::string& payload = R"({"n":1})") {
  Envelope e;
  e.event_id = id;
  e.event_type = "test.event";
  EXPECT_TRUE(e.set_payload_json(payload).ok());
  return e.to_json();
}

// Reports of every settled message, in settlement order.
class Reports {
 public:
  std::function<void(const MessageReport&)> hook() {
    return [this](const MessageReport& r) {
      std::lock_guard lock(mutex_);
      entries_.push_back({r.outcome, r.stream_sequence, std::string(r.event_id), std::string(r.detail), r.handler_ran,
                          r.dead_letter_reason});
    };
  }
  struct Entry {
    MessageOutcome outcome;
    std::uint64_t sequence;
    std::string event_id;
    std::string detail;
    bool handler_ran;
    std::optional<idem::nats::DeadLetterReason> reason;
  };
  std::vector<Entry> all() const {
    std::lock_guard lock(mutex_);
    return entries_;
  }
  std::size_t count(MessageOutcome outcome) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.outcome == outcome; }));
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

// Gate blocks handlers until opened. Open it from a guard declared after the
// consumer, so that a failed assertion cannot leave a handler blocked while
// the consumer's destructor waits for it.
class Gate {
 public:
  explicit Gate(bool open = false) : open_(open) {}
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void close() {
    std::lock_guard lock(mutex_);
    open_ = false;
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }
  struct Opener {
    Gate& gate;
    ~Opener() { gate.open(); }
  };

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_;
};

// Counts handler runs per event id.
class Runs {
 public:
  void add(const std::string& id) {
    std::lock_guard lock(mutex_);
    ++runs_[id];
  }
  std::map<std::string, int> all() const {
    std::lock_guard lock(mutex_);
    return runs_;
  }
  int total() const {
    std::lock_guard lock(mutex_);
    int n = 0;
    for (const auto& [id, count] : runs_) n += count;
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, int> runs_;
};

class NatsConsumerTest : public idem::test::NatsSuite {
 protected:
  void SetUp() override {
    NatsSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    static std::atomic<int> counter{0};
    const int n = ++counter;
    stream_ = "T" + std::to_string(n);
    subject_ = "t" + std::to_string(n) + ".events";
    dlq_subject_ = "dlq.t" + std::to_string(n);
    conn_ = connect(server().url());
    ASSERT_TRUE(
        idem::nats::ensure_stream(*conn_, {.name = stream_, .subjects = {"t" + std::to_string(n) + ".>"}}).ok());
    ASSERT_TRUE(idem::nats::ensure_stream(*conn_, {.name = stream_ + "_DLQ", .subjects = {dlq_subject_}}).ok());
  }

  static std::shared_ptr<Connection> connect(const std::string& url) {
    auto conn = Connection::connect({.url = url, .name = "idem-test", .reconnect_wait = 100ms});
    EXPECT_TRUE(conn.ok()) << conn.error().to_string();
    return conn.ok() ? *conn : nullptr;
  }

  std::shared_ptr<idem::IdempotencyChecker> checker(std::shared_ptr<idem::Store> store,
                                                    std::chrono::milliseconds lease = 2s) {
    return std::make_shared<idem::IdempotencyChecker>(std::move(store), idem::CheckerOptions{.lease = lease});
  }

  ConsumerOptions options() const {
    ConsumerOptions o;
    o.stream = stream_;
    o.durable = "workers";
    o.concurrency = 4;
    o.fetch_wait = 100ms;
    o.retry_backoff = 20ms;
    o.retry_backoff_max = 200ms;
    o.dead_letter_subject = dlq_subject_;
    o.drain_timeout = 5s;
    return o;
  }

  void publish(const std::string& data, int copies = 1, const idem::nats::Headers& headers = {}) {
    idem::nats::Publisher publisher(conn_);
    for (int i = 0; i < copies; ++i) {
      auto receipt = publisher.publish_raw(subject_, data, {}, headers);
      ASSERT_TRUE(receipt.ok()) << receipt.error().to_string();
    }
  }

  idem::test::ConsumerState state(const std::string& durable = "workers") {
    auto s = idem::test::consumer_state(*conn_, stream_, durable);
    EXPECT_TRUE(s.has_value());
    return s.value_or(idem::test::ConsumerState{});
  }

  bool drained(const std::string& durable = "workers") {
    auto s = idem::test::consumer_state(*conn_, stream_, durable);
    return s && s->num_pending == 0 && s->num_ack_pending == 0;
  }

  std::string stream_, subject_, dlq_subject_;
  std::shared_ptr<Connection> conn_;
};

TEST_F(NatsConsumerTest, PublisherSetsMsgIdSoTheServerStoresEachKeyOnce) {
  idem::nats::Publisher publisher(conn_);
  auto envelope = Envelope::parse(envelope_json("order-1")).value();
  auto first = publisher.publish(subject_, envelope);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->stream, stream_);
  for (int i = 0; i < 2; ++i) {
    auto again = publisher.publish(subject_, envelope);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(again->sequence, first->sequence);
  }
  auto messages = idem::test::stream_messages(*conn_, stream_);
  ASSERT_EQ(messages.size(), 1U);
  EXPECT_EQ(messages[0].header("Nats-Msg-Id"), "order-1");

  // A subject no stream captures: a clear, typed error after the retries.
  idem::nats::Publisher nowhere(conn_, {.ack_timeout = 200ms, .max_attempts = 2, .retry_backoff = 10ms});
  auto lost = nowhere.publish_raw("nobody.listens", "x");
  ASSERT_FALSE(lost.ok());
  EXPECT_TRUE(lost.error().retryable()) << lost.error().to_string();
}

// Every event published three times runs its handler once; the copies are
// acked as duplicates. Run on an inline store and on a native-async one.
class NatsThreeCopiesTest : public NatsConsumerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(NatsThreeCopiesTest, EveryKeyRunsOnceAndEveryCopyIsAcked) {
  const bool native = GetParam();
  auto memory = idem::MemoryStore::create();
  std::shared_ptr<idem::test::NativeAsyncStore> async_store;
  std::shared_ptr<idem::Store> store = memory;
  if (native) {
    async_store = std::make_shared<idem::test::NativeAsyncStore>(memory);
    store = async_store;
  }
  constexpr int kEvents = 60;
  for (int i = 0; i < kEvents; ++i) publish(envelope_json("e" + std::to_string(i)), 3);

  Runs runs;
  Reports reports;
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  auto consumer = Consumer::start(conn_, checker(store), o, [&](MessageContext& ctx) {
    runs.add(ctx.envelope().event_id);
    EXPECT_GT(ctx.token(), 0U);
    EXPECT_EQ(ctx.attempt(), 1U);
    return std::string(R"({"ok":true})");
  });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = (*consumer)->stats();
        return s.count(MessageOutcome::kAcked) + s.count(MessageOutcome::kAckedDuplicate) == 3 * kEvents;
      },
      20s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));
  (*consumer)->stop();

  const auto s = (*consumer)->stats();
  EXPECT_EQ(s.count(MessageOutcome::kAcked), static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(s.count(MessageOutcome::kAckedDuplicate), static_cast<std::uint64_t>(2 * kEvents));
  EXPECT_EQ(s.count(MessageOutcome::kDeadLettered), 0U);
  EXPECT_EQ(s.handler_runs, static_cast<std::uint64_t>(kEvents));
  const auto all = runs.all();
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kEvents));
  for (const auto& [id, count] : all) EXPECT_EQ(count, 1) << id;
  if (native) {
    EXPECT_GT(async_store->async_calls(), 0U);
  }

  const std::string metrics = (*consumer)->render_metrics();
  EXPECT_NE(metrics.find("idem_nats_messages_total{stream=\"" + stream_ +
                         "\",consumer=\"workers\",outcome=\"acked\"} " + std::to_string(kEvents)),
            std::string::npos)
      << metrics;
}

INSTANTIATE_TEST_SUITE_P(Stores, NatsThreeCopiesTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? std::string("NativeAsync") : std::string("Inline");
                         });

// A copy that arrives while the first is still running is nak'd with a delay
// and never acked; it is acked (as a completed duplicate) only after the
// first completed.
TEST_F(NatsConsumerTest, InProgressDuplicateIsNakedNeverAckedAndCompletesAfterTheFirst) {
  Gate gate;
  std::atomic<int> started{0};
  Reports reports;
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  o.in_progress_delay = 100ms;
  auto consumer = Consumer::start(conn_, checker(idem::MemoryStore::create()), o, [&](MessageContext&) {
    ++started;
    gate.wait();
    return std::string("{}");
  });
  Gate::Opener opener{gate};
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();

  publish(envelope_json("slow-1"));
  ASSERT_TRUE(wait_until([&] { return started.load() == 1; }, 5s));
  publish(envelope_json("slow-1"));  // stream sequence 2
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kNakInProgress) >= 3; }, 5s));
  // Both copies are still unacknowledged on the server.
  const auto held = state();
  EXPECT_EQ(held.num_ack_pending + held.num_pending, 2U);
  EXPECT_EQ(held.ack_floor_stream, 0U);

  gate.open();
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAckedDuplicate) == 1; }, 5s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));
  (*consumer)->stop();

  EXPECT_EQ(started.load(), 1);
  // Sequence 2's story: nak'd while 1 ran, acked only after 1's ack.
  std::size_t first_acked = 0;
  std::size_t second_acked = 0;
  const auto all = reports.all();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].sequence == 1) {
      ASSERT_EQ(all[i].outcome, MessageOutcome::kAcked) << "the first copy is settled once, when it completes";
      first_acked = i;
    } else {
      ASSERT_EQ(all[i].sequence, 2U);
      ASSERT_FALSE(all[i].handler_ran);
      if (all[i].outcome == MessageOutcome::kAckedDuplicate) {
        second_acked = i;
      } else {
        ASSERT_EQ(all[i].outcome, MessageOutcome::kNakInProgress);
      }
    }
  }
  EXPECT_GT(second_acked, first_acked);
}

// A handler that runs much longer than the AckWait is not redelivered: the
// heartbeat renews the lease and sends InProgress.
TEST_F(NatsConsumerTest, HeartbeatKeepsALongHandlersMessageFromBeingRedelivered) {
  Reports reports;
  std::atomic<int> runs{0};
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  auto c = checker(idem::MemoryStore::create(), 1s);
  auto consumer = Consumer::start(conn_, c, o, [&](MessageContext& ctx) {
    ++runs;
    std::this_thread::sleep_for(3500ms);  // > 3 x the AckWait (1.1 s)
    EXPECT_FALSE(ctx.lease_lost());
    return std::string("{}");
  });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();
  EXPECT_EQ((*consumer)->ack_wait(), 1100ms);
  publish(envelope_json("long-1"));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAcked) == 1; }, 10s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));
  (*consumer)->stop();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(reports.all().size(), 1U) << "no redelivery, no in-progress nak";
  EXPECT_EQ(state().num_redelivered, 0U);
}

// Undecodable messages, terminal failures, retryable failures past
// max_deliver and key mismatches are terminated and published to the
// dead-letter subject with the reason, origin, delivery count, headers and
// payload.
TEST_F(NatsConsumerTest, PoisonMessagesGoToTheDeadLetterSubject) {
  Reports reports;
  Runs runs;
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  o.max_deliver = 2;
  auto consumer =
      Consumer::start(conn_, checker(idem::MemoryStore::create()), o, [&](MessageContext& ctx) -> std::string {
        const std::string& id = ctx.envelope().event_id;
        runs.add(id);
        if (id == "terminal") throw idem::TerminalError("card declined");
        if (id == "flaky") throw std::runtime_error("downstream timeout");
        return "{}";
      });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();

  publish("this is not an envelope", 1, {{"X-Trace", "abc"}, {"Nats-Expected-Stream", stream_}});
  publish(envelope_json("terminal"));
  publish(envelope_json("flaky"));
  publish(envelope_json("shared", R"({"v":1})"));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kDeadLettered) == 3; }, 10s));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAcked) == 1; }, 5s));
  publish(envelope_json("shared", R"({"v":2})"));  // the same key, another payload
  publish(envelope_json("terminal"));              // a copy of a terminal failure
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kDeadLettered) == 5; }, 10s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));
  (*consumer)->stop();

  EXPECT_EQ(runs.all().at("terminal"), 1) << "a replayed terminal failure does not run again";
  EXPECT_EQ(runs.all().at("flaky"), 2) << "max_deliver=2 attempts";
  const auto s = (*consumer)->stats();
  EXPECT_EQ(s.count(MessageOutcome::kNakRetry), 1U);

  // The copy of "terminal" is terminated too, but the dead-letter stream
  // keeps one letter per key.
  auto letters = idem::test::stream_messages(*conn_, stream_ + "_DLQ");
  ASSERT_EQ(letters.size(), 4U);
  std::map<std::string, idem::test::StoredMessage> by_reason;
  for (auto& m : letters) by_reason[m.header("Idem-Dead-Letter-Reason")] = m;
  ASSERT_EQ(by_reason.count("undecodable"), 1U);
  ASSERT_EQ(by_reason.count("terminal"), 1U);
  ASSERT_EQ(by_reason.count("max_deliver"), 1U);
  ASSERT_EQ(by_reason.count("mismatch"), 1U);

  const auto& undecodable = by_reason["undecodable"];
  EXPECT_EQ(undecodable.data, "this is not an envelope");
  EXPECT_EQ(undecodable.subject, dlq_subject_);
  EXPECT_EQ(undecodable.header("Idem-Original-Subject"), subject_);
  EXPECT_EQ(undecodable.header("Idem-Original-Stream"), stream_);
  EXPECT_EQ(undecodable.header("Idem-Original-Sequence"), "1");
  EXPECT_EQ(undecodable.header("Idem-Delivery-Count"), "1");
  EXPECT_EQ(undecodable.header("X-Trace"), "abc");
  EXPECT_EQ(undecodable.header("Idem-Original-Nats-Expected-Stream"), stream_);
  EXPECT_EQ(undecodable.header("Nats-Expected-Stream"), "");
  EXPECT_FALSE(undecodable.header("Idem-Dead-Letter-Error").empty());

  const auto& terminal = by_reason["terminal"];
  EXPECT_EQ(terminal.data, envelope_json("terminal"));
  EXPECT_NE(terminal.header("Idem-Dead-Letter-Error").find("card declined"), std::string::npos);
  EXPECT_EQ(terminal.header("Idem-Event-Id"), "terminal");
  EXPECT_EQ(terminal.header("Idem-Attempt"), "1");

  const auto& exhausted = by_reason["max_deliver"];
  EXPECT_EQ(exhausted.header("Idem-Delivery-Count"), "2");
  EXPECT_EQ(exhausted.header("Idem-Attempt"), "2");
  EXPECT_NE(exhausted.header("Idem-Dead-Letter-Error").find("downstream timeout"), std::string::npos);

  EXPECT_EQ(by_reason["mismatch"].data, envelope_json("shared", R"({"v":2})"));
}

// A result above max_result_bytes is not stored (the checker marks the
// record FAILED, retryable): the message is retried, then dead-lettered.
TEST_F(NatsConsumerTest, ResultTooLargeIsRetriedThenDeadLettered) {
  Reports reports;
  std::atomic<int> runs{0};
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  o.max_deliver = 2;
  auto c = std::make_shared<idem::IdempotencyChecker>(idem::MemoryStore::create(),
                                                      idem::CheckerOptions{.lease = 2s, .max_result_bytes = 16});
  auto consumer = Consumer::start(conn_, c, o, [&](MessageContext&) {
    ++runs;
    return std::string(64, 'x');
  });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();
  publish(envelope_json("big"));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kDeadLettered) == 1; }, 10s));
  (*consumer)->stop();
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(reports.count(MessageOutcome::kNakRetry), 1U);
  EXPECT_EQ(reports.count(MessageOutcome::kNakLeaseLost), 0U);
  const auto all = reports.all();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().reason, idem::nats::DeadLetterReason::kMaxDeliver);
  EXPECT_NE(all.back().detail.find("max_result_bytes"), std::string::npos) << all.back().detail;
}

// While the store is down nothing is acked and no handler runs: messages are
// nak'd and come back. A completion that fails mid-outage is retried, so the
// handler that already ran does not run again.
TEST_F(NatsConsumerTest, StoreOutageNaksAndRedeliversWithoutAcking) {
  auto flaky = std::make_shared<idem::test::FlakyStore>(idem::MemoryStore::create());
  Reports reports;
  Runs runs;
  Gate gate(true);
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  auto consumer = Consumer::start(conn_, checker(flaky), o, [&](MessageContext& ctx) {
    runs.add(ctx.envelope().event_id);
    gate.wait();
    return std::string("{}");
  });
  Gate::Opener opener{gate};
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();

  flaky->set_down(true);
  for (int i = 0; i < 10; ++i) publish(envelope_json("o" + std::to_string(i)));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kNakStoreError) >= 30; }, 10s));
  EXPECT_EQ(runs.total(), 0);
  EXPECT_EQ((*consumer)->stats().count(MessageOutcome::kAcked), 0U);
  const auto held = state();
  EXPECT_EQ(held.num_ack_pending + held.num_pending, 10U);
  EXPECT_EQ(held.ack_floor_stream, 0U);

  flaky->set_down(false);
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAcked) == 10; }, 10s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));

  // The store fails between the handler's effect and its completion.
  gate.close();
  publish(envelope_json("mid-outage"));
  ASSERT_TRUE(wait_until([&] { return runs.all().count("mid-outage") == 1; }, 5s));
  flaky->set_down(true);
  gate.open();
  std::this_thread::sleep_for(400ms);  // completions are refused meanwhile
  EXPECT_EQ(reports.count(MessageOutcome::kAcked), 10U);
  flaky->set_down(false);
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAcked) == 11; }, 5s));
  ASSERT_TRUE(wait_until([&] { return drained(); }, 5s));
  (*consumer)->stop();
  for (const auto& [id, count] : runs.all()) EXPECT_EQ(count, 1) << id;
  EXPECT_GT(flaky->refused(), 0U);
}

// The server restarts while messages flow: the connection comes back, the
// durable consumer carries on, nothing is lost and nothing runs twice.
TEST_F(NatsConsumerTest, NatsServerRestartMidStreamLosesNothing) {
  std::string err;
  auto own = idem::test::NatsServer::start(&err);
  ASSERT_TRUE(own) << err;
  auto conn = connect(own->url());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(idem::nats::ensure_stream(*conn, {.name = "R", .subjects = {"r.>"}}).ok());
  ASSERT_TRUE(idem::nats::ensure_stream(*conn, {.name = "R_DLQ", .subjects = {"dlq.r"}}).ok());
  idem::nats::Publisher publisher(conn, {.ack_timeout = 1s, .max_attempts = 30, .retry_backoff = 100ms});
  constexpr int kBefore = 200;
  constexpr int kAfter = 100;
  for (int i = 0; i < kBefore; ++i) {
    ASSERT_TRUE(
        publisher.publish(std::string("r.events"), Envelope::parse(envelope_json("r" + std::to_string(i))).value())
            .ok());
  }

  Runs runs;
  ConsumerOptions o = options();
  o.stream = "R";
  o.dead_letter_subject = "dlq.r";
  auto consumer = Consumer::start(conn, checker(idem::MemoryStore::create()), o, [&](MessageContext& ctx) {
    runs.add(ctx.envelope().event_id);
    std::this_thread::sleep_for(5ms);
    return std::string("{}");
  });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();
  ASSERT_TRUE(wait_until([&] { return (*consumer)->stats().count(MessageOutcome::kAcked) >= 50; }, 10s));

  own->process().stop();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(own->process().restart(&err)) << err;
  for (int i = kBefore; i < kBefore + kAfter; ++i) {
    auto receipt = publisher.publish("r.events", Envelope::parse(envelope_json("r" + std::to_string(i))).value());
    ASSERT_TRUE(receipt.ok()) << receipt.error().to_string();
  }
  ASSERT_TRUE(wait_until([&] { return runs.all().size() == kBefore + kAfter; }, 30s)) << runs.all().size();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = idem::test::consumer_state(*conn, "R", "workers");
        return s && s->num_pending == 0 && s->num_ack_pending == 0;
      },
      15s));
  (*consumer)->stop();
  for (const auto& [id, count] : runs.all()) EXPECT_EQ(count, 1) << id;
  EXPECT_GE(conn->reconnects(), 1U);
}

// Every message outcome shows up as a span (with the outcome and the
// dead-letter reason) and in the consumer's metrics; the handler's verdict
// reaches the checker's observer (MetricsRegistry).
TEST_F(NatsConsumerTest, EveryOutcomeHasASpanAndAMetric) {
  auto tracer = std::make_shared<idem::test::RecordingTracer>();
  auto metrics = std::make_shared<idem::MetricsRegistry>(idem::MetricsOptions{.store = "memory"});
  auto observer = std::make_shared<idem::CompositeObserver>(std::vector<std::shared_ptr<idem::Observer>>{
      std::make_shared<idem::TracingObserver>(tracer, idem::TracingOptions{.messaging_system = "nats"}), metrics});
  auto c = std::make_shared<idem::IdempotencyChecker>(idem::MemoryStore::create(),
                                                      idem::CheckerOptions{.lease = 2s, .observer = observer});
  Reports reports;
  ConsumerOptions o = options();
  o.on_message = reports.hook();
  auto consumer = Consumer::start(conn_, c, o, [](MessageContext&) { return std::string("{}"); });
  ASSERT_TRUE(consumer.ok()) << consumer.error().to_string();
  publish(envelope_json("traced"));
  ASSERT_TRUE(wait_until([&] { return reports.count(MessageOutcome::kAcked) == 1; }, 5s));
  publish(envelope_json("traced"));
  publish("{not an envelope");
  ASSERT_TRUE(wait_until([&] { return reports.all().size() == 3; }, 5s));
  (*consumer)->stop();

  const auto spans = tracer->spans_named(idem::nats::trace::kSpanMessage);
  ASSERT_EQ(spans.size(), 3U);
  std::map<std::string, idem::test::RecordingTracer::Ended> by_outcome;
  for (const auto& span : spans) {
    by_outcome[span.attributes.at(std::string(idem::trace::kOutcome))] = span;
    EXPECT_EQ(span.attributes.at(std::string(idem::trace::kMessagingSystem)), "nats");
    EXPECT_EQ(span.attributes.at(std::string(idem::trace::kMessagingDestination)), subject_);
    EXPECT_EQ(span.attributes.at(std::string(idem::nats::trace::kDelivery)), "1");
  }
  ASSERT_EQ(by_outcome.count("acked"), 1U);
  ASSERT_EQ(by_outcome.count("acked_duplicate"), 1U);
  ASSERT_EQ(by_outcome.count("dead_lettered"), 1U);
  EXPECT_EQ(by_outcome["acked"].attributes.at(std::string(idem::trace::kMessagingMessageId)), "traced");
  EXPECT_EQ(by_outcome["dead_lettered"].attributes.at(std::string(idem::nats::trace::kDeadLetterReason)),
            "undecodable");
  const auto handlers = tracer->spans_named(idem::trace::kSpanHandler);
  ASSERT_EQ(handlers.size(), 1U);
  EXPECT_EQ(handlers[0].attributes.at(std::string(idem::trace::kOutcome)), "completed");

  EXPECT_EQ(metrics->counter_value("idem_completions_total", R"(scope="",store="memory")"), 1U);
  EXPECT_EQ(metrics->counter_value("idem_duplicates_total", R"(scope="",store="memory",state="completed")"), 1U);
  const std::string text = (*consumer)->render_metrics();
  const std::string labels = "stream=\"" + stream_ + "\",consumer=\"workers\"";
  for (const std::string& line :
       {"idem_nats_messages_total{" + labels + ",outcome=\"acked\"} 1",
        "idem_nats_messages_total{" + labels + ",outcome=\"acked_duplicate\"} 1",
        "idem_nats_messages_total{" + labels + ",outcome=\"dead_lettered\"} 1",
        "idem_nats_dead_letters_total{" + labels + ",reason=\"undecodable\"} 1",
        "idem_nats_handler_runs_total{" + labels + "} 1", "idem_nats_in_flight{" + labels + "} 0"}) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << line << " in\n" << text;
  }
}

TEST_F(NatsConsumerTest, InvalidOptionsAreTypedErrors) {
  auto c = checker(idem::MemoryStore::create());
  auto handler = [](MessageContext&) { return std::string(); };
  ConsumerOptions o = options();
  o.durable = "has.dot";
  auto bad = Consumer::start(conn_, c, o, handler);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), idem::ErrorCode::kInvalidConfiguration);
  o = options();
  o.stream = "NO_SUCH_STREAM";
  auto missing = Consumer::start(conn_, c, o, handler);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), idem::ErrorCode::kNotFound) << missing.error().to_string();
  auto unreachable = Connection::connect({.url = "nats://127.0.0.1:1", .connect_timeout = 500ms});
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.error().code(), idem::ErrorCode::kUnavailable);
}

}  // namespace
