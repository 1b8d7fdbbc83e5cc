// File: src/integrations/nats/consumer_impl.h
//
// The consumer's moving parts: Delivery (one fetched message, from fetch to
// settlement) and ConsumerImpl (threads, subscription, counters).
//
// Who runs what (the seam between the store's two kinds of async):
//
//   fetch thread     pulls, decodes, then claims the batch: itself when the
//                    store is native (async_is_native), else through the pool
//   worker pool      handlers; store calls of inline stores; dead-letter
//                    publishes (they wait for a PubAck)
//   store I/O thread settles native claims/completions: ack and nak there,
//                    hand handlers and dead letters to the pool
//   timer thread     heartbeats: extend the lease (inline: the call runs on
//                    the timer thread so it never queues behind handlers),
//                    then InProgress; delayed completion retries
//
// A Delivery is settled exactly once (ack, nak or term) under its mutex;
// every later callback sees `settled` and does nothing. All natsMsg calls
// happen under that mutex too, so no InProgress can follow the final ack.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "idem/core/checker.h"
#include "idem/core/observer.h"
#include "idem/integrations/nats.h"
#include "integrations/nats/handles.h"
#include "integrations/nats/policy.h"
#include "integrations/nats/timer.h"
#include "integrations/nats/worker_pool.h"

namespace idem::nats::detail {

struct Delivery {
  std::shared_ptr<ConsumerImpl> consumer;  // keeps the shared state alive for late store callbacks

  std::mutex mutex;
  MsgPtr msg;                               // guarded by mutex; null once settled
  bool settled = false;                     // guarded by mutex
  std::unique_ptr<SpanScope> span;          // "idem.nats.message"; guarded by mutex
  std::unique_ptr<SpanScope> handler_span;  // "idem.handler"; guarded by mutex

  // Set on the fetch thread before the delivery is shared; read-only after.
  std::string subject;
  std::string stream;
  Headers headers;
  std::uint64_t stream_sequence = 0;
  std::uint64_t delivery = 1;
  Timer::Clock::time_point received;
  std::optional<Envelope> envelope;
  std::string decode_error;

  // Set by the claim's callback before `leased` is released; read-only after.
  std::string key;
  ClaimOutcome claim;
  std::atomic<bool> leased{false};      // the heartbeat renews the lease while true
  std::atomic<bool> lease_lost{false};  // a renewal found a newer owner

  // Owned by whichever thread runs the current step (steps hand over
  // through the pool, the timer or the store, which order the accesses).
  bool handler_ran = false;
  bool completed_by_handler = false;
  std::string result;
  Timer::Clock::time_point handler_started;
  Timer::Clock::time_point first_complete;
  std::uint32_t complete_attempts = 0;
};

struct ConsumerImpl : std::enable_shared_from_this<ConsumerImpl> {
  ConsumerImpl(std::shared_ptr<Connection> conn, std::shared_ptr<IdempotencyChecker> check, ConsumerOptions opts,
               Handler h);
  ~ConsumerImpl();
  ConsumerImpl(const ConsumerImpl&) = delete;
  ConsumerImpl& operator=(const ConsumerImpl&) = delete;

  Status bind();
  void start_threads();
  void stop();

  // The steps of a delivery (see consumer.cpp).
  void fetch_loop();
  std::shared_ptr<Delivery> make_delivery(MsgPtr msg);
  void process_batch(std::vector<std::shared_ptr<Delivery>> batch);
  void on_claimed(const std::shared_ptr<Delivery>& d, Result<Claim> claim);
  void act(const std::shared_ptr<Delivery>& d, Decision decision);
  void run_handler(const std::shared_ptr<Delivery>& d);
  void complete(const std::shared_ptr<Delivery>& d);
  void on_completed(const std::shared_ptr<Delivery>& d, Status status);
  void fail(const std::shared_ptr<Delivery>& d, FailureKind kind, std::string detail);
  void on_failed(const std::shared_ptr<Delivery>& d, FailureKind kind, const std::string& detail, Status status);
  void dead_letter(const std::shared_ptr<Delivery>& d, Decision decision);
  void settle(const std::shared_ptr<Delivery>& d, const Decision& decision);
  std::optional<std::chrono::milliseconds> heartbeat(const std::weak_ptr<Delivery>& weak);
  // Runs a store call where the threading contract wants it: here for a
  // native store or on a pool thread, else on the pool.
  void store_call(std::function<void()> call);
  void report_handler(const std::shared_ptr<Delivery>& d, HandlerOutcome outcome);

  std::shared_ptr<Connection> connection;
  std::shared_ptr<IdempotencyChecker> checker;
  ConsumerOptions options;
  Handler handler;
  FailureClassifier classify;
  Policy policy;
  std::string dead_letter_subject;
  std::chrono::milliseconds ack_wait{0};
  std::chrono::milliseconds heartbeat_interval{0};
  bool native = false;
  std::shared_ptr<Observer> observer;

  SubscriptionPtr subscription;
  std::unique_ptr<WorkerPool> pool;
  std::unique_ptr<Timer> timer;
  std::thread fetcher;
  std::atomic<bool> running{false};
  std::atomic<bool> stopped{false};

  std::mutex flight_mutex;
  std::condition_variable flight_cv;
  std::unordered_map<const Delivery*, std::weak_ptr<Delivery>> live;  // guarded by flight_mutex

  // Counters (relaxed: read for stats and metrics only).
  std::atomic<std::uint64_t> outcome_counts[kMessageOutcomeCount] = {};
  std::atomic<std::uint64_t> dead_letter_counts[kDeadLetterReasonCount] = {};
  std::atomic<std::uint64_t> handler_runs{0};
  std::atomic<std::uint64_t> fetched{0};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> ack_errors{0};
  std::atomic<std::uint64_t> fetch_errors{0};
};

}  // namespace idem::nats::detail
