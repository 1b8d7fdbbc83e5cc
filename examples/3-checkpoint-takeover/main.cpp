// Example 3: the guard, a checkpoint, and a takeover that resumes from it.
//
// A worker (a child process) claims an order, charges the card, records a
// checkpoint "charged", and crashes before it can send the receipt and mark
// the order done. A redelivery that arrives while the dead worker's lease is
// still live is told the order is in progress. Once the lease runs out, the
// next redelivery takes the order over, sees the checkpoint, and resumes:
// it sends the receipt without charging the card again.
//
// The crash is real (the child process ends with _exit in the middle of the
// handler), so the store must be shared between processes: SQLite (the
// default) or Redis, not memory://.
//
//   example_checkpoint_takeover                       # a temporary SQLite file
//   example_checkpoint_takeover redis://127.0.0.1:6379
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "common/example.h"

namespace {

using namespace std::chrono_literals;

// A short lease so that the example does not wait long for the takeover. In
// a service the lease is the longest a handler may go without a heartbeat.
constexpr auto kLease = 2s;

// The payment provider's ledger, a file both processes append to: the
// proof of how many times the card was charged.
struct Ledger {
  std::string path;
  void charge(const std::string& line) const { std::ofstream(path, std::ios::app) << line << '\n'; }
  int charges() const {
    std::ifstream in(path);
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }
};

// The first worker: claims, charges, checkpoints, and dies.
[[noreturn]] void worker_that_crashes(const example::Run& run, const idem::Envelope& order, const Ledger& ledger) {
  auto checker = run.checker({.lease = kLease});
  idem::IdempotentEventProcessor processor(checker, {.scope = "orders"});
  auto ctx = processor.process(order);
  if (!ctx.should_process()) std::_Exit(3);
  const std::string charge_id = "ch_" + std::to_string(ctx.token());
  ledger.charge(charge_id + " token=" + std::to_string(ctx.token()));
  std::printf("  worker 1: claimed %s (attempt %u, token %llu), charged the card: %s\n", order.event_id.c_str(),
              ctx.attempt(), static_cast<unsigned long long>(ctx.token()), charge_id.c_str());
  ctx.checkpoint("charged", charge_id);
  std::printf("  worker 1: checkpoint \"charged\" = %s recorded; now it crashes before sending the receipt\n",
              charge_id.c_str());
  std::fflush(stdout);
  // No destructor, no "mark failed", no heartbeat any more: a kill -9.
  ::_exit(137);
}

}  // namespace

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 3: the guard with a checkpoint, and a takeover that resumes from it");
  if (run.process_local()) {
    std::fprintf(stderr, "this example crashes a worker process: give a store shared between processes\n");
    return 2;
  }
  std::array<char, 64> ledger_path{};
  std::snprintf(ledger_path.data(), ledger_path.size(), "/tmp/idem-example-ledger-XXXXXX");
  const int ledger_fd = ::mkstemp(ledger_path.data());
  if (ledger_fd < 0) {
    std::perror("mkstemp");
    return 2;
  }
  ::close(ledger_fd);
  const Ledger ledger{ledger_path.data()};
  const auto order = example::event("order-42", "order.placed", R"({"amount_cents":4200})");

  std::printf("1. worker 1 takes the order and dies half-way\n");
  std::fflush(stdout);  // the child would print the parent's buffer again
  const pid_t child = ::fork();
  if (child < 0) {
    std::perror("fork");
    return 2;
  }
  if (child == 0) worker_that_crashes(run, order, ledger);
  int status = 0;
  ::waitpid(child, &status, 0);
  run.check(WIFEXITED(status) && WEXITSTATUS(status) == 137, "worker 1 died in the middle of the handler");

  // The survivor: the same service, another process or pod.
  auto checker = run.checker({.lease = kLease});
  idem::IdempotentEventProcessor processor(checker, {.scope = "orders"});

  std::printf("\n2. the broker redelivers at once: the dead worker's lease is still live\n");
  {
    auto ctx = processor.process(order);
    std::printf("  worker 2: %s\n", ctx.in_progress() ? "in progress elsewhere: nak it, do not ack it"
                                                      : std::string(idem::to_string(ctx.status())).c_str());
    run.check(ctx.in_progress(), "a redelivery within the lease is not run, and not acknowledged either");
  }

  std::printf("\n3. the lease runs out (no heartbeat from a dead worker)\n");
  const std::string key = checker
                              ->key_for(order,
                                        [&] {
                                          idem::KeyOptions keys = checker->options().key;
                                          keys.scope = "orders";
                                          return keys;
                                        }())
                              .value();
  const auto waited_from = std::chrono::steady_clock::now();
  auto record = checker->wait_for_completion(key, 10s).value();  // returns when the lease has run out
  std::printf("  waited %.1f s; the record is still %s, with an expired lease\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - waited_from).count(),
              record ? std::string(idem::to_string(record->status)).c_str() : "absent");

  std::printf("\n4. the next redelivery takes over and resumes from the checkpoint\n");
  std::string receipt;
  {
    auto ctx = processor.process(order);
    run.check(ctx.should_process() && ctx.is_takeover() && ctx.attempt() == 2,
              "worker 2 took the order over (attempt 2)");
    const auto& checkpoint = ctx.last_checkpoint();
    std::string charge_id;
    if (checkpoint && checkpoint->name == "charged") {
      charge_id = checkpoint->data;
      std::printf("  worker 2: checkpoint \"charged\" = %s: the card was charged, skip to the receipt\n",
                  charge_id.c_str());
    } else {
      charge_id = "ch_" + std::to_string(ctx.token());
      ledger.charge(charge_id + " token=" + std::to_string(ctx.token()));
      std::printf("  worker 2: no checkpoint, charging: %s\n", charge_id.c_str());
    }
    run.check(checkpoint.has_value() && checkpoint->name == "charged", "the takeover saw worker 1's checkpoint");
    std::printf("  worker 2: sending the receipt for %s with fencing token %llu\n", charge_id.c_str(),
                static_cast<unsigned long long>(ctx.token()));

    // Had worker 1 only been frozen (a GC pause, a stopped VM) rather than
    // dead, it could wake up now and try to finish. Its token is older than
    // worker 2's, so the store refuses it and writes nothing.
    const idem::Token worker1_token = std::stoull(charge_id.substr(3));
    const idem::Status zombie = checker->complete(key, worker1_token, R"({"from":"worker 1"})");
    std::printf("  worker 1, back from the dead with token %llu, tries to complete: %s\n",
                static_cast<unsigned long long>(worker1_token),
                zombie ? "accepted" : zombie.error().to_string().c_str());
    run.check(!zombie && zombie.error().code() == idem::ErrorCode::kLeaseLost && ctx.token() > worker1_token,
              "a stale worker's write is refused: the fencing token moved on");

    receipt = R"({"charge":")" + charge_id + R"(","receipt":"sent"})";
    ctx.mark_completed(receipt);
  }

  std::printf("\n5. any later redelivery gets the result\n");
  {
    auto ctx = processor.process(order);
    std::printf("  worker 2: duplicate, cached result %s\n", ctx.cached_result().value_or("-").c_str());
    run.check(ctx.is_duplicate() && ctx.cached_result() == receipt, "the completed order is replayed");
  }
  run.check(ledger.charges() == 1, "the card was charged exactly once across the crash");
  std::remove(ledger.path.c_str());
  return run.finish();
}
