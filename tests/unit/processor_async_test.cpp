// process_async() on a natively asynchronous store (issue 8 item 1): many
// events in flight from one thread, callbacks on the store's I/O thread,
// the handler executor, and the guarantees of the synchronous guard kept
// without blocking (retries, self-completion, abandonment, lease lost,
// classification, oversized results, the heartbeat through extend_async).
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "idem/core/handler.h"
#include "idem/core/processor.h"
#include "idem/stores/memory.h"
#include "unit/async_native_store.h"
#include "unit/patterns_support.h"

namespace idem {
namespace {

using namespace std::chrono_literals;
using testing::make_envelope;
using Outcome = IdempotentEventProcessor::AsyncOutcome;
using Completion = IdempotentEventProcessor::Completion;

// Collects on_done outcomes from whatever thread delivers them.
class Outcomes {
 public:
  IdempotentEventProcessor::AsyncCallback callback() {
    return [this](Outcome outcome) {
      std::lock_guard lock(mutex_);
      threads_.insert(std::this_thread::get_id());
      outcomes_.push_back(std::move(outcome));
      ready_.notify_all();
    };
  }
  // Waits for `n` outcomes in total (up to 20 s) and returns them.
  std::vector<Outcome> wait(std::size_t n) {
    std::unique_lock lock(mutex_);
    EXPECT_TRUE(ready_.wait_for(lock, 20s, [&] { return outcomes_.size() >= n; }))
        << outcomes_.size() << " of " << n << " outcomes arrived";
    return outcomes_;
  }
  std::set<std::thread::id> threads() {
    std::lock_guard lock(mutex_);
    return threads_;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return outcomes_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<Outcome> outcomes_;
  std::set<std::thread::id> threads_;
};

// Records what the guard reports about handlers.
class HandlerLog final : public Observer {
 public:
  void on_handler(std::string_view, HandlerOutcome outcome, std::chrono::nanoseconds) override {
    std::lock_guard lock(mutex_);
    outcomes_.push_back(outcome);
  }
  std::vector<HandlerOutcome> outcomes() {
    std::lock_guard lock(mutex_);
    return outcomes_;
  }

 private:
  std::mutex mutex_;
  std::vector<HandlerOutcome> outcomes_;
};

// A one-thread executor, standing in for a caller's pool.
class OneThreadPool {
 public:
  OneThreadPool() : thread_([this] { run(); }) {}
  ~OneThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  OneThreadPool(const OneThreadPool&) = delete;
  OneThreadPool& operator=(const OneThreadPool&) = delete;
  HandlerExecutor executor() {
    return [this](std::function<void()> task) {
      {
        std::lock_guard lock(mutex_);
        tasks_.push_back(std::move(task));
      }
      wake_.notify_one();
    };
  }
  std::thread::id id() const { return thread_.get_id(); }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

struct Fixture {
  explicit Fixture(CheckerOptions checker_options = {}, ProcessorOptions processor_options = {.heartbeat = false}) {
    checker_options.observer = log;
    checker = std::make_shared<IdempotencyChecker>(store, checker_options);
    processor = std::make_unique<IdempotentEventProcessor>(checker, processor_options);
  }
  std::optional<IdempotencyRecord> record(const std::string& id) {
    return store->inner().get(checker->key_for(make_envelope(id)).value()).value();
  }
  std::shared_ptr<test::AsyncNativeStore> store = std::make_shared<test::AsyncNativeStore>();
  std::shared_ptr<HandlerLog> log = std::make_shared<HandlerLog>();
  std::shared_ptr<IdempotencyChecker> checker;
  std::unique_ptr<IdempotentEventProcessor> processor;
};

TEST(ProcessAsyncNative, HundredsInFlightFromOneThread) {
  Fixture f;
  Outcomes outcomes;
  constexpr int kEvents = 300;
  std::atomic<int> ran{0};
  std::set<std::thread::id> handler_threads;
  std::mutex threads_mutex;
  f.store->pause();  // the store holds every answer: nothing can finish yet
  for (int i = 0; i < kEvents; ++i) {
    f.processor->process_async(
        make_envelope("e" + std::to_string(i)),
        [&](const Envelope& envelope, ProcessingContext& ctx, Completion completion) {
          EXPECT_TRUE(ctx.should_process());
          {
            std::lock_guard lock(threads_mutex);
            handler_threads.insert(std::this_thread::get_id());
          }
          ran.fetch_add(1);
          completion.succeed("done " + envelope.event_id);
        },
        outcomes.callback());
  }
  // Every call returned at once, with all 300 claims in flight.
  EXPECT_EQ(f.store->queued(), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(ran.load(), 0);
  f.store->resume();
  auto all = outcomes.wait(kEvents);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kEvents));
  for (const Outcome& o : all) {
    EXPECT_EQ(o.status, ClaimStatus::kAcquired);
    EXPECT_FALSE(o.exception);
    ASSERT_TRUE(o.result);
    EXPECT_EQ(*o.result, "done " + o.key.substr(o.key.rfind(':') + 1));
  }
  EXPECT_EQ(ran.load(), kEvents);
  // Default executor: inline on the thread that completed the claim, the
  // store's I/O thread; on_done runs there too.
  EXPECT_EQ(handler_threads, std::set<std::thread::id>{f.store->io_thread()});
  EXPECT_EQ(outcomes.threads(), std::set<std::thread::id>{f.store->io_thread()});
  EXPECT_EQ(f.store->calls("claim"), 0);
  EXPECT_EQ(f.store->calls("complete"), 0);
  EXPECT_EQ(f.store->calls("complete_async"), kEvents);
  auto record = f.record("e7");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, ProcessingStatus::kCompleted);
  EXPECT_EQ(record->result, "done e7");
  EXPECT_EQ(f.log->outcomes(), std::vector<HandlerOutcome>(kEvents, HandlerOutcome::kCompleted));
}

TEST(ProcessAsyncNative, TheExecutorRunsTheHandler) {
  OneThreadPool pool;
  Fixture f({}, {.heartbeat = false, .handler_executor = pool.executor()});
  Outcomes outcomes;
  std::promise<std::thread::id> handler_thread;
  f.processor->process_async(
      make_envelope("e1"),
      [&](const Envelope& envelope, ProcessingContext&, Completion completion) {
        handler_thread.set_value(std::this_thread::get_id());
        EXPECT_EQ(envelope.event_id, "e1") << "the envelope is a copy that outlives the caller's";
        completion.succeed("ok");
      },
      outcomes.callback());
  EXPECT_EQ(handler_thread.get_future().get(), pool.id());
  auto all = outcomes.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].result, "ok");
}

TEST(ProcessAsyncNative, AnExecutorThatRefusesOrDropsTheTaskAbandonsTheClaim) {
  Fixture refusing({}, {.heartbeat = false, .handler_executor = [](std::function<void()>) {
                          throw std::runtime_error("pool is shutting down");
                        }});
  Outcomes outcomes;
  refusing.processor->process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, Completion) { ADD_FAILURE() << "ran"; },
      outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].error, "pool is shutting down");
  auto record = refusing.record("e1");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, ProcessingStatus::kFailed);
  EXPECT_TRUE(record->retryable);

  Fixture dropping({}, {.heartbeat = false, .handler_executor = [](std::function<void()> task) { (void)task; }});
  Outcomes dropped;
  dropping.processor->process_async(
      make_envelope("e2"), [](const Envelope&, ProcessingContext&, Completion) { ADD_FAILURE() << "ran"; },
      dropped.callback());
  all = dropped.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_NE(all[0].error.value_or("").find("abandoned"), std::string::npos);
  EXPECT_EQ(dropping.record("e2")->status, ProcessingStatus::kFailed);
  EXPECT_EQ(dropping.log->outcomes(), std::vector<HandlerOutcome>{HandlerOutcome::kAbandoned});
}

TEST(ProcessAsyncNative, AbandonedCompletionMarksTheRecordFailedRetryable) {
  Fixture f;
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, Completion) {}, outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status, ClaimStatus::kAcquired);
  EXPECT_NE(all[0].error.value_or("").find("abandoned"), std::string::npos);
  auto record = f.record("e1");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, ProcessingStatus::kFailed);
  EXPECT_TRUE(record->retryable);
  EXPECT_EQ(f.log->outcomes(), std::vector<HandlerOutcome>{HandlerOutcome::kAbandoned});
  EXPECT_EQ(f.store->calls("fail"), 0) << "abandonment must not block on a synchronous write";
}

TEST(ProcessAsyncNative, FailuresAreClassifiedAndTheHandlersErrorIsReported) {
  Fixture f;
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("terminal"),
      [](const Envelope&, ProcessingContext&, Completion) -> void { throw TerminalError("card declined"); },
      outcomes.callback());
  f.processor->process_async(
      make_envelope("retryable"),
      [](const Envelope&, ProcessingContext&, Completion completion) {
        completion.fail(std::make_exception_ptr(std::runtime_error("bank timeout")));
        completion.succeed("too late: the first verdict counts");
      },
      outcomes.callback());
  auto all = outcomes.wait(2);
  ASSERT_EQ(all.size(), 2u);
  for (const Outcome& o : all) {
    EXPECT_TRUE(o.exception);
    EXPECT_FALSE(o.result);
  }
  EXPECT_FALSE(f.record("terminal")->retryable);
  EXPECT_EQ(f.record("terminal")->error, "card declined");
  EXPECT_TRUE(f.record("retryable")->retryable);
  EXPECT_EQ(f.record("retryable")->status, ProcessingStatus::kFailed);
  // A duplicate of the terminal failure replays the stored error without running.
  f.processor->process_async(
      make_envelope("terminal"), [](const Envelope&, ProcessingContext&, Completion) { ADD_FAILURE() << "ran"; },
      outcomes.callback());
  all = outcomes.wait(3);
  EXPECT_EQ(all[2].status, ClaimStatus::kFailed);
  EXPECT_EQ(all[2].error, "card declined");
}

TEST(ProcessAsyncNative, TransientWriteErrorsAreRetriedWithoutBlocking) {
  Fixture f;
  f.store->fail_next_completes(2);
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("e1"),
      [](const Envelope&, ProcessingContext&, Completion completion) { completion.succeed("stored at last"); },
      outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_FALSE(all[0].exception);
  EXPECT_EQ(all[0].result, "stored at last");
  EXPECT_EQ(f.store->calls("complete_async"), 3);
  EXPECT_EQ(f.record("e1")->status, ProcessingStatus::kCompleted);

  // An outage that outlasts the retries is reported, typed.
  f.store->fail_next_completes(100);
  f.processor->process_async(
      make_envelope("e2"), [](const Envelope&, ProcessingContext&, Completion completion) { completion.succeed("x"); },
      outcomes.callback());
  all = outcomes.wait(2);
  ASSERT_TRUE(all[1].exception);
  EXPECT_THROW(std::rethrow_exception(all[1].exception), StoreUnavailableError);
  EXPECT_EQ(f.store->calls("complete_async"), 3 + 4);
  f.store->fail_next_completes(0);
}

TEST(ProcessAsyncNative, ARetriedCompletionThatAlreadyLandedIsNotALostLease) {
  Fixture f;
  f.store->lose_next_complete_replies(1);  // the write lands; its reply does not
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, Completion completion) { completion.succeed("r"); },
      outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_FALSE(all[0].exception) << all[0].error.value_or("");
  EXPECT_EQ(all[0].result, "r");
  EXPECT_EQ(f.store->calls("get_async"), 1) << "the retry's kLeaseLost is checked against the record";
  EXPECT_EQ(f.log->outcomes(), std::vector<HandlerOutcome>{HandlerOutcome::kCompleted});
}

TEST(ProcessAsyncNative, ATakenOverLeaseIsReportedAsLost) {
  Fixture f(CheckerOptions{.lease = 50ms});
  Outcomes outcomes;
  std::promise<Completion> held;
  f.processor->process_async(
      make_envelope("e1"),
      [&](const Envelope&, ProcessingContext&, Completion completion) { held.set_value(completion); },
      outcomes.callback());
  Completion completion = held.get_future().get();
  std::this_thread::sleep_for(120ms);  // the lease lapses; another worker takes over
  auto takeover = f.checker->claim(make_envelope("e1"));
  ASSERT_TRUE(takeover && takeover->outcome.acquired());
  EXPECT_EQ(takeover->outcome.acquire_kind, AcquireKind::kTakeover);
  completion.succeed("stale");
  auto all = outcomes.wait(1);
  ASSERT_TRUE(all[0].exception);
  EXPECT_THROW(std::rethrow_exception(all[0].exception), LeaseLostError);
  EXPECT_EQ(f.record("e1")->token, takeover->outcome.token) << "the stale owner wrote nothing";
  EXPECT_EQ(f.log->outcomes(), std::vector<HandlerOutcome>{HandlerOutcome::kLeaseLost});
}

TEST(ProcessAsyncNative, TheHeartbeatRenewsThroughExtendAsync) {
  // Ten beats per lease: a loaded machine may stall the heartbeat thread for
  // a while without the lease lapsing.
  Fixture f(CheckerOptions{.lease = 400ms}, ProcessorOptions{.heartbeat_interval = 40ms});
  Outcomes outcomes;
  std::promise<Completion> held;
  f.processor->process_async(
      make_envelope("e1"),
      [&](const Envelope&, ProcessingContext&, Completion completion) { held.set_value(completion); },
      outcomes.callback());
  Completion completion = held.get_future().get();
  std::this_thread::sleep_for(1000ms);  // two and a half leases: only the heartbeat keeps it
  auto rival = f.checker->claim(make_envelope("e1"));
  ASSERT_TRUE(rival);
  EXPECT_EQ(rival->outcome.status, ClaimStatus::kInProgress) << "the lease lapsed: no renewal reached the store";
  completion.succeed("kept");
  auto all = outcomes.wait(1);
  EXPECT_FALSE(all[0].exception);
  EXPECT_GE(f.store->calls("extend_async"), 10);
  EXPECT_EQ(f.store->calls("extend"), 0) << "renewals must not block on the store";
  EXPECT_EQ(f.record("e1")->status, ProcessingStatus::kCompleted);
}

TEST(ProcessAsyncNative, OversizedResultMarksTheRecordFailedRetryable) {
  Fixture f(CheckerOptions{.max_result_bytes = 8});
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("e1"),
      [](const Envelope&, ProcessingContext&, Completion completion) { completion.succeed("far too large"); },
      outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_TRUE(all[0].exception);
  EXPECT_THROW(std::rethrow_exception(all[0].exception), ResultTooLargeError);
  EXPECT_EQ(f.record("e1")->status, ProcessingStatus::kFailed);
  EXPECT_TRUE(f.record("e1")->retryable);
  EXPECT_EQ(f.log->outcomes(), std::vector<HandlerOutcome>{HandlerOutcome::kFailedRetryable});
}

TEST(ProcessAsyncNative, AnInProgressDuplicateIsReportedAtOnceEvenWithAWaitConfigured) {
  Fixture f({}, {.wait_for_in_progress = 10s, .heartbeat = false});
  Outcomes outcomes;
  std::promise<Completion> held;
  f.processor->process_async(
      make_envelope("e1"),
      [&](const Envelope&, ProcessingContext&, Completion completion) { held.set_value(completion); },
      outcomes.callback());
  Completion original = held.get_future().get();
  const auto start = std::chrono::steady_clock::now();
  f.processor->process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, Completion) { ADD_FAILURE() << "ran"; },
      outcomes.callback());
  auto all = outcomes.wait(1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "process_async waited for the original";
  EXPECT_EQ(all[0].status, ClaimStatus::kInProgress);
  ASSERT_TRUE(all[0].record);
  EXPECT_EQ(all[0].record->status, ProcessingStatus::kProcessing);
  original.succeed("r");
  outcomes.wait(2);
}

TEST(ProcessAsyncNative, TheContextOffersANonBlockingCheckpointAndRefusesBlockingVerdicts) {
  Fixture f;
  Outcomes outcomes;
  f.processor->process_async(
      make_envelope("e1"),
      [](const Envelope&, ProcessingContext& ctx, Completion completion) {
        EXPECT_THROW(ctx.mark_completed("x"), ConfigurationError);
        ctx.checkpoint_async("step", "1", [completion](const Status& s) {
          EXPECT_TRUE(s.ok());
          completion.succeed("after the checkpoint");
        });
      },
      outcomes.callback());
  auto all = outcomes.wait(1);
  EXPECT_EQ(all[0].result, "after the checkpoint");
  EXPECT_EQ(f.store->calls("checkpoint_async"), 1);
}

TEST(ProcessAsyncNative, AStoreOutageIsATypedErrorOrAnUnprotectedRunUnderFailOpen) {
  auto outage = std::make_shared<testing::OutageStore>(MemoryStore::create());
  outage->down = true;
  auto closed = std::make_shared<IdempotencyChecker>(outage);
  IdempotentEventProcessor closed_processor(closed, {.heartbeat = false});
  Outcomes outcomes;
  closed_processor.process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, Completion) { ADD_FAILURE() << "ran"; },
      outcomes.callback());
  auto all = outcomes.wait(1);
  ASSERT_TRUE(all[0].exception);
  EXPECT_THROW(std::rethrow_exception(all[0].exception), StoreUnavailableError);

  auto open = std::make_shared<IdempotencyChecker>(outage, CheckerOptions{.outage_policy = OutagePolicy::kFailOpen});
  IdempotentEventProcessor open_processor(open, {.heartbeat = false});
  open_processor.process_async(
      make_envelope("e1"),
      [](const Envelope&, ProcessingContext& ctx, Completion completion) {
        EXPECT_TRUE(ctx.is_unprotected());
        completion.succeed("ran without a claim");
      },
      outcomes.callback());
  all = outcomes.wait(2);
  EXPECT_EQ(all[1].result, "ran without a claim");
  EXPECT_TRUE(all[1].unprotected);
}

// --- The asynchronous wrapper ---------------------------------------------------

TEST(AsyncWrapper, RunsOnceAndReplaysWithTheWrappersSemantics) {
  auto store = std::make_shared<test::AsyncNativeStore>();
  auto checker = std::make_shared<IdempotencyChecker>(store);
  std::atomic<int> runs{0};
  auto handle = idempotent_async_event_handler(
      [&](const Envelope& envelope, Completion completion) {
        runs.fetch_add(1);
        completion.succeed("charged " + envelope.event_id);
      },
      HandlerOptions{.processor = {.heartbeat = false}, .checker = checker});
  auto run = [&](const Envelope& envelope) {
    std::promise<AsyncHandlerResult> result;
    handle(envelope, [&](AsyncHandlerResult r) { result.set_value(std::move(r)); });
    return result.get_future().get();
  };
  AsyncHandlerResult first = run(make_envelope("e1"));
  EXPECT_FALSE(first.error);
  EXPECT_EQ(first.result, "charged e1");
  EXPECT_EQ(first.disposition, Disposition::kExecuted);
  AsyncHandlerResult again = run(make_envelope("e1"));
  EXPECT_FALSE(again.error);
  EXPECT_EQ(again.result, "charged e1");
  EXPECT_EQ(again.disposition, Disposition::kReplayed);
  EXPECT_EQ(runs.load(), 1);

  // skip_on_duplicate = false: a completed duplicate is a DuplicateEventError.
  auto strict = idempotent_async_event_handler(
      [&](const Envelope&, ProcessingContext&, Completion completion) { completion.succeed("x"); },
      HandlerOptions{.processor = {.heartbeat = false}, .skip_on_duplicate = false, .checker = checker});
  std::promise<AsyncHandlerResult> dup;
  strict(make_envelope("e1"), [&](AsyncHandlerResult r) { dup.set_value(std::move(r)); });
  AsyncHandlerResult d = dup.get_future().get();
  ASSERT_TRUE(d.error);
  EXPECT_THROW(std::rethrow_exception(d.error), DuplicateEventError);

  // A handler error is the caller's error, and the next delivery runs again.
  auto failing = idempotent_async_event_handler(
      [&](const Envelope&, Completion) -> void { throw std::runtime_error("bank down"); },
      HandlerOptions{.processor = {.heartbeat = false}, .checker = checker});
  std::promise<AsyncHandlerResult> failed;
  failing(make_envelope("e2"), [&](AsyncHandlerResult r) { failed.set_value(std::move(r)); });
  AsyncHandlerResult fr = failed.get_future().get();
  ASSERT_TRUE(fr.error);
  EXPECT_THROW(std::rethrow_exception(fr.error), std::runtime_error);
  AsyncHandlerResult retried = run(make_envelope("e2"));
  EXPECT_EQ(retried.result, "charged e2");
}

TEST(AsyncWrapper, AnInProgressDuplicateIsAnEventInProgressError) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  std::promise<Completion> held;
  auto handle =
      idempotent_async_event_handler([&](const Envelope&, Completion completion) { held.set_value(completion); },
                                     HandlerOptions{.processor = {.heartbeat = false}, .checker = checker});
  std::promise<AsyncHandlerResult> original;
  handle(make_envelope("e1"), [&](AsyncHandlerResult r) { original.set_value(std::move(r)); });
  Completion completion = held.get_future().get();
  std::promise<AsyncHandlerResult> duplicate;
  handle(make_envelope("e1"), [&](AsyncHandlerResult r) { duplicate.set_value(std::move(r)); });
  AsyncHandlerResult d = duplicate.get_future().get();
  ASSERT_TRUE(d.error);
  try {
    std::rethrow_exception(d.error);
  } catch (const EventInProgressError& e) {
    EXPECT_TRUE(e.record().has_value());
    EXPECT_EQ(e.code(), ErrorCode::kInProgress);
  } catch (...) {
    ADD_FAILURE() << "not an EventInProgressError";
  }
  completion.succeed("r");
  EXPECT_EQ(original.get_future().get().result, "r");
}

}  // namespace
}  // namespace idem
