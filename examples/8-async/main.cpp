// Example 8: the asynchronous form, many events in flight from one thread.
//
// An event loop does not block on each store round trip: it issues
// claim_async() for the next events while earlier ones are still being
// claimed or completed, runs each acquired handler, and finishes it with
// complete_async(). Here one thread keeps up to 64 events in flight over a
// stream of 1000 deliveries, a fifth of them redeliveries.
//
// Where the callbacks run depends on the store (see idem/core/store.h):
// SQLite and memory answer on the calling thread before *_async returns;
// native asynchronous stores (Redis, PostgreSQL) answer on their I/O thread.
// This loop is written for both: callbacks only record the answer and wake
// the loop, and the handler runs on the loop's thread.
//
//   example_async                       # a temporary SQLite file
//   example_async redis://127.0.0.1:6379
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "common/example.h"

namespace {

constexpr std::size_t kDeliveries = 1000;
constexpr std::size_t kWindow = 64;  // most events in flight at once

// The stream an at-least-once broker hands us: 80% new orders, 20%
// redeliveries of an earlier one, some of them while it is still in flight.
std::vector<idem::Envelope> make_stream(std::size_t& unique) {
  std::mt19937 rng(7);
  std::vector<idem::Envelope> stream;
  unique = 0;
  while (stream.size() < kDeliveries) {
    if (unique > 0 && rng() % 5 == 0) {
      // A recent order, so that some redeliveries find it in flight.
      const std::size_t back = std::min<std::size_t>(unique, 8);
      stream.push_back(stream[stream.size() - 1 - rng() % back]);
    } else {
      const std::string id = "order-" + std::to_string(unique++);
      stream.push_back(example::event(id, "order.placed", R"({"n":)" + std::to_string(unique) + "}"));
    }
  }
  return stream;
}

// What the callbacks hand back to the loop.
struct Mailbox {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::pair<std::size_t, idem::Claim>> acquired;  // delivery index, claim: run the handler
  std::deque<std::size_t> redeliver;                         // in progress elsewhere: nak, deliver again later
  std::size_t in_flight = 0;                                 // claims and completions not answered yet
  std::size_t finished = 0;                                  // deliveries settled for good
  std::size_t replayed = 0;
  std::size_t naks = 0;
  std::vector<std::string> errors;

  // A delivery is done for good: acknowledged, in broker terms.
  void settle() {
    --in_flight;
    ++finished;
    wake.notify_one();
  }
};

}  // namespace

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 8: the asynchronous form, many events in flight from one thread");
  auto checker = run.checker();
  std::printf("store answers %s\n\n", checker->store().async_is_native()
                                          ? "on its I/O thread (native asynchronous I/O)"
                                          : "on the calling thread, before *_async returns");
  std::size_t unique = 0;
  const std::vector<idem::Envelope> stream = make_stream(unique);

  Mailbox box;
  std::map<std::string, int> runs;  // the side effect, touched by the loop thread only
  std::size_t next = 0;
  std::size_t max_in_flight = 0;
  std::deque<std::size_t> to_deliver;  // redeliveries, after the stream

  auto on_claim = [&](std::size_t index) {
    return [&box, index](idem::Result<idem::Claim> claim) {
      std::lock_guard lock(box.mutex);
      if (!claim) {
        box.errors.push_back(claim.error().to_string());
        box.settle();
      } else if (claim->outcome.acquired()) {
        box.acquired.emplace_back(index, std::move(*claim));  // still in flight until completed
        box.wake.notify_one();
      } else if (claim->outcome.status == idem::ClaimStatus::kInProgress) {
        ++box.naks;
        box.redeliver.push_back(index);
        box.in_flight -= 1;
        box.wake.notify_one();
      } else {
        ++box.replayed;  // kCompleted: the stored result is the answer
        box.settle();
      }
    };
  };

  const auto started = std::chrono::steady_clock::now();
  std::unique_lock lock(box.mutex);
  while (box.finished < stream.size()) {
    // Redeliveries the broker sends back after a nak.
    while (!box.redeliver.empty()) {
      to_deliver.push_back(box.redeliver.front());
      box.redeliver.pop_front();
    }
    // Keep the window full.
    while (box.in_flight < kWindow && (next < stream.size() || !to_deliver.empty())) {
      std::size_t index;
      if (next < stream.size()) {
        index = next++;
      } else {
        index = to_deliver.front();
        to_deliver.pop_front();
      }
      ++box.in_flight;
      max_in_flight = std::max(max_in_flight, box.in_flight);
      lock.unlock();  // an inline store runs the callback right here
      checker->claim_async(stream[index], on_claim(index));
      lock.lock();
    }
    // Run the handlers of the claims that came back acquired.
    while (!box.acquired.empty()) {
      auto [index, claim] = std::move(box.acquired.front());
      box.acquired.pop_front();
      lock.unlock();
      const idem::Envelope& e = stream[index];
      ++runs[e.event_id];
      const std::string result = R"({"accepted":")" + e.event_id + R"("})";
      checker->complete_async(claim.key, claim.outcome.token, result, [&box](idem::Status status) {
        std::lock_guard guard(box.mutex);
        if (!status) box.errors.push_back(status.error().to_string());
        box.settle();
      });
      lock.lock();
    }
    // Nothing to do until the store answers: sleep until it does.
    box.wake.wait(lock, [&] {
      const bool can_issue = box.in_flight < kWindow && (next < stream.size() || !to_deliver.empty());
      return !box.acquired.empty() || !box.redeliver.empty() || can_issue || box.finished == stream.size();
    });
  }
  lock.unlock();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  std::size_t ran_twice = 0;
  std::size_t never_ran = unique - runs.size();
  for (const auto& [id, n] : runs) ran_twice += n > 1 ? 1 : 0;
  std::printf("%zu deliveries (%zu orders) in %.3f s from one thread: at most %zu in flight at once\n", stream.size(),
              unique, seconds, max_in_flight);
  std::printf(
      "handlers run: %zu; duplicates answered from the store: %zu; in-progress duplicates nak'ed and "
      "redelivered: %zu; errors: %zu\n",
      runs.size(), box.replayed, box.naks, box.errors.size());
  if (!box.errors.empty()) std::printf("first error: %s\n", box.errors.front().c_str());
  std::printf("\n");
  run.check(box.errors.empty(), "no store call failed");
  run.check(ran_twice == 0 && never_ran == 0, "every order's handler ran exactly once");
  run.check(max_in_flight > 1, "many events were in flight at once, from a single thread");
  run.check(box.naks > 0 && box.replayed > 0,
            "redeliveries met both cases: the original still in flight (nak) and done (replayed)");
  return run.finish();
}
