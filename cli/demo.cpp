#include "demo.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "idem/idem.h"

namespace idem::cli {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// The lease is short so the crashed worker's key is taken over within the
// demo's run time, as a broker's redelivery would after its ack timeout.
constexpr auto kDemoLease = 1500ms;
constexpr auto kRedeliveryDelay = 200ms;

struct Delivery {
  std::size_t event = 0;
  SteadyClock::time_point not_before{};
};

// DeliveryQueue plays the broker: at-least-once, with delayed redelivery of
// messages that were not acknowledged.
class DeliveryQueue {
 public:
  void push(Delivery delivery) {
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(delivery);
      ++outstanding_;
    }
    ready_.notify_one();
  }
  // Blocks until a delivery is due, or returns false when everything was acknowledged.
  bool pop(Delivery& out) {
    std::unique_lock lock(mutex_);
    while (true) {
      if (outstanding_ == 0) return false;
      const auto now = SteadyClock::now();
      auto due = std::find_if(pending_.begin(), pending_.end(), [&](const Delivery& d) { return d.not_before <= now; });
      if (due != pending_.end()) {
        out = *due;
        pending_.erase(due);
        return true;
      }
      ready_.wait_for(lock, 20ms);
    }
  }
  // ack() or nak(): every popped delivery ends in exactly one of them.
  void ack() {
    std::lock_guard lock(mutex_);
    --outstanding_;
    if (outstanding_ == 0) ready_.notify_all();
  }
  void nak(Delivery delivery, std::chrono::milliseconds delay) {
    delivery.not_before = SteadyClock::now() + delay;
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(delivery);
    }
    ready_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Delivery> pending_;
  std::size_t outstanding_ = 0;
};

struct Counters {
  std::atomic<std::uint64_t> deliveries{0};
  std::atomic<std::uint64_t> executions{0};
  std::atomic<std::uint64_t> replays{0};
  std::atomic<std::uint64_t> in_progress{0};
  std::atomic<std::uint64_t> takeovers{0};
  std::atomic<std::uint64_t> resumed_from_checkpoint{0};
  std::atomic<std::uint64_t> errors{0};
};

std::string event_name(std::size_t i) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "evt-%04zu", i);
  return buffer;
}

}  // namespace

int run_demo(const DemoOptions& options) {
  const std::string url = options.store_url.empty() ? default_store_url() : options.store_url;
  // A fresh scope per run, so that a second run demonstrates the same things
  // instead of replaying the first run's results.
  const std::string scope = "demo-" + std::to_string(::getpid()) + "-" +
                            std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  auto checker = IdempotencyChecker::from_url(url, CheckerOptions{.ttl = std::chrono::hours(1), .lease = kDemoLease});
  if (!checker) {
    std::cerr << "idem demo: cannot open store " << url << ": " << checker.error().to_string() << "\n";
    return 1;
  }
  IdempotentEventProcessor processor(*checker, ProcessorOptions{.scope = scope});

  const std::size_t events = std::max<std::size_t>(options.events, 1);
  std::vector<Envelope> envelopes(events);
  for (std::size_t i = 0; i < events; ++i) {
    envelopes[i].event_id = event_name(i);
    envelopes[i].event_type = "payment.requested";
    envelopes[i].payload = R"({"amount_cents":)" + std::to_string(100 + i) + "}";
  }
  // The side effect under protection: charges per event. Anything above one
  // is the double charge Idem exists to prevent.
  std::vector<std::atomic<int>> charges(events);

  // Worker 0 "dies" mid-handler on the crash event: it has claimed the key and
  // charged the card, but never completes. Its record stays PROCESSING until
  // the lease runs out; a redelivery then takes over and must not charge twice.
  const std::size_t crash_event = events / 2;
  {
    auto claim = (*checker)->claim(envelopes[crash_event], [&] {
      KeyOptions key = (*checker)->options().key;
      key.scope = scope;
      return key;
    }());
    if (!claim || !claim->outcome.acquired()) {
      std::cerr << "idem demo: the crash scenario could not claim its key: "
                << (claim ? std::string(to_string(claim->outcome.status)) : claim.error().to_string()) << "\n";
      return 1;
    }
    charges[crash_event].fetch_add(1);
    (void)(*checker)->checkpoint(claim->key, claim->outcome.token,
                                 Checkpoint{"charged", "ch_" + event_name(crash_event)});
    // ...and here the worker process is gone: no completion, no failure.
  }

  DeliveryQueue queue;
  std::vector<Delivery> stream;
  for (std::size_t copy = 0; copy < std::max<std::size_t>(options.deliveries_per_event, 1); ++copy) {
    for (std::size_t i = 0; i < events; ++i) stream.push_back({i, {}});
  }
  std::shuffle(stream.begin(), stream.end(), std::mt19937(42));
  for (const auto& delivery : stream) queue.push(delivery);

  Counters counters;
  const auto started = SteadyClock::now();
  auto worker = [&] {
    std::mt19937 jitter(std::random_device{}());
    Delivery delivery;
    while (queue.pop(delivery)) {
      counters.deliveries.fetch_add(1);
      const Envelope& envelope = envelopes[delivery.event];
      try {
        auto ctx = processor.process(envelope);
        if (ctx.should_process()) {
          counters.executions.fetch_add(1);
          if (ctx.is_takeover()) counters.takeovers.fetch_add(1);
          // Resume instead of redo: the previous owner recorded that the
          // charge went through before it died.
          if (ctx.last_checkpoint() && ctx.last_checkpoint()->name == "charged") {
            counters.resumed_from_checkpoint.fetch_add(1);
          } else {
            std::this_thread::sleep_for(std::chrono::microseconds(500 + jitter() % 1500));
            charges[delivery.event].fetch_add(1);
            ctx.checkpoint("charged", "ch_" + envelope.event_id);
          }
          ctx.mark_completed(R"({"charge":"ch_)" + envelope.event_id + R"("})");
          queue.ack();
        } else if (ctx.in_progress()) {
          // Never acknowledge an in-progress duplicate: if the first worker
          // died, this delivery is the only copy left.
          counters.in_progress.fetch_add(1);
          queue.nak(delivery, kRedeliveryDelay);
        } else {
          counters.replays.fetch_add(1);
          queue.ack();
        }
      } catch (const std::exception& e) {
        counters.errors.fetch_add(1);
        std::cerr << "idem demo: " << envelope.event_id << ": " << e.what() << "\n";
        queue.nak(delivery, kRedeliveryDelay);
      }
    }
  };
  std::vector<std::thread> workers;
  for (std::size_t w = 0; w < std::max<std::size_t>(options.workers, 1); ++w) workers.emplace_back(worker);
  for (auto& thread : workers) thread.join();
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();

  std::size_t double_effects = 0;
  std::size_t missing_effects = 0;
  for (const auto& charge : charges) {
    if (charge.load() > 1) ++double_effects;
    if (charge.load() < 1) ++missing_effects;
  }
  const bool ok = double_effects == 0 && missing_effects == 0 && counters.takeovers.load() >= 1;

  if (options.json) {
    std::printf(
        R"({"store":"%s","scope":"%s","events":%zu,"deliveries":%llu,"unique_keys":%zu,"workers":%zu,)"
        R"("handler_executions":%llu,"replays":%llu,"in_progress_conflicts":%llu,"takeovers":%llu,)"
        R"("resumed_from_checkpoint":%llu,"double_effects":%zu,"missing_effects":%zu,"errors":%llu,"seconds":%.3f,"ok":%s})"
        "\n",
        url.c_str(), scope.c_str(), events, static_cast<unsigned long long>(counters.deliveries.load()), events,
        options.workers, static_cast<unsigned long long>(counters.executions.load()),
        static_cast<unsigned long long>(counters.replays.load()),
        static_cast<unsigned long long>(counters.in_progress.load()),
        static_cast<unsigned long long>(counters.takeovers.load()),
        static_cast<unsigned long long>(counters.resumed_from_checkpoint.load()), double_effects, missing_effects,
        static_cast<unsigned long long>(counters.errors.load()), seconds, ok ? "true" : "false");
    return ok ? 0 : 1;
  }

  std::printf("idem demo: an at-least-once stream on %s\n", url.c_str());
  std::printf("  scope %s, %zu workers, each event delivered %zu times, shuffled\n\n", scope.c_str(), options.workers,
              options.deliveries_per_event);
  std::printf("  %-28s %8llu\n", "deliveries processed", static_cast<unsigned long long>(counters.deliveries.load()));
  std::printf("  %-28s %8zu\n", "unique keys", events);
  std::printf("  %-28s %8llu\n", "handler executions", static_cast<unsigned long long>(counters.executions.load()));
  std::printf("  %-28s %8llu   (cached result returned, handler not run)\n", "replays",
              static_cast<unsigned long long>(counters.replays.load()));
  std::printf("  %-28s %8llu   (redelivered later, never acknowledged)\n", "in-progress conflicts",
              static_cast<unsigned long long>(counters.in_progress.load()));
  std::printf("  %-28s %8llu   (%s: a worker died mid-handler; its lease expired)\n", "takeovers",
              static_cast<unsigned long long>(counters.takeovers.load()), event_name(crash_event).c_str());
  std::printf("  %-28s %8llu   (the new owner saw checkpoint \"charged\" and did not charge again)\n",
              "resumed from checkpoint", static_cast<unsigned long long>(counters.resumed_from_checkpoint.load()));
  std::printf("  %-28s %8zu\n", "keys charged twice", double_effects);
  std::printf("  %-28s %8zu\n", "keys never charged", missing_effects);
  std::printf("  %-28s %8.2f s\n\n", "time", seconds);
  if (ok) {
    std::printf("OK: every key's effect ran exactly once.\n");
    return 0;
  }
  std::printf("FAILED: %zu key(s) charged twice, %zu never charged, %llu takeover(s).\n", double_effects,
              missing_effects, static_cast<unsigned long long>(counters.takeovers.load()));
  return 1;
}

}  // namespace idem::cli
