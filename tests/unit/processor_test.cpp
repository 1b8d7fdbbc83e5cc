#include "idem/core/processor.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <thread>

#include "idem/stores/memory.h"
#include "unit/patterns_support.h"

namespace idem {
namespace {

using namespace std::chrono_literals;
using testing::make_envelope;

class ProcessorTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<Store> store_ = MemoryStore::create({.clock = clock_});
  std::shared_ptr<IdempotencyChecker> checker_ =
      std::make_shared<IdempotencyChecker>(store_, CheckerOptions{.lease = 30s});
  IdempotentEventProcessor processor_{checker_, ProcessorOptions{.heartbeat = false}};
};

TEST_F(ProcessorTest, CompletedEventReplaysItsResult) {
  auto env = make_envelope("e1");
  {
    auto ctx = processor_.process(env);
    ASSERT_TRUE(ctx.should_process());
    EXPECT_FALSE(ctx.is_duplicate());
    EXPECT_GT(ctx.token(), 0U);
    ctx.mark_completed(R"({"charge":"ch_1"})");
  }
  auto dup = processor_.process(env);
  EXPECT_TRUE(dup.is_duplicate());
  EXPECT_EQ(dup.status(), ClaimStatus::kCompleted);
  EXPECT_EQ(dup.cached_result(), R"({"charge":"ch_1"})");
  EXPECT_THROW(dup.mark_completed("x"), ConfigurationError);  // a duplicate owns nothing: a bug in the caller
}

TEST_F(ProcessorTest, LeavingScopeWithoutCompletingMarksFailedAndAllowsRetry) {
  auto env = make_envelope("e1");
  {
    auto ctx = processor_.process(env);
    ASSERT_TRUE(ctx.should_process());
  }  // early return: no mark_completed
  auto record = checker_->get("idempotency:events:e1");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
  EXPECT_TRUE((*record)->retryable);

  auto retry = processor_.process(env);
  ASSERT_TRUE(retry.should_process());
  EXPECT_EQ(retry.acquire_kind(), AcquireKind::kRetry);
  EXPECT_EQ(retry.attempt(), 2U);
  retry.mark_completed("ok");
}

TEST_F(ProcessorTest, ExceptionInsideGuardMarksFailed) {
  auto env = make_envelope("e1");
  EXPECT_THROW(
      {
        auto ctx = processor_.process(env);
        throw std::runtime_error("boom");
      },
      std::runtime_error);
  auto record = checker_->get("idempotency:events:e1");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
}

TEST_F(ProcessorTest, TerminalFailureIsReplayed) {
  auto env = make_envelope("e1");
  {
    auto ctx = processor_.process(env);
    ctx.mark_failed("card declined", FailureKind::kTerminal);
  }
  auto dup = processor_.process(env);
  EXPECT_EQ(dup.status(), ClaimStatus::kFailed);
  EXPECT_EQ(dup.cached_error(), "card declined");
}

TEST_F(ProcessorTest, TakeoverAfterLeaseExpirySeesCheckpointAndFencesTheOldWorker) {
  auto env = make_envelope("e1");
  auto first = processor_.process(env);
  ASSERT_TRUE(first.should_process());
  first.checkpoint("charged", "ch_1");

  clock_->advance(31s);  // the first worker "died": its lease ran out
  auto second = processor_.process(env);
  ASSERT_TRUE(second.should_process());
  EXPECT_TRUE(second.is_takeover());
  EXPECT_EQ(second.attempt(), 2U);
  EXPECT_GT(second.token(), first.token());
  ASSERT_TRUE(second.last_checkpoint());
  EXPECT_EQ(second.last_checkpoint()->name, "charged");
  EXPECT_EQ(second.last_checkpoint()->data, "ch_1");

  // The stale worker wakes up: its completion must not land.
  EXPECT_THROW(first.mark_completed("stale"), LeaseLostError);
  second.mark_completed("fresh");
  auto record = checker_->get("idempotency:events:e1");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->result, "fresh");
}

TEST_F(ProcessorTest, ScopesAreIndependent) {
  IdempotentEventProcessor billing(checker_, {.scope = "billing", .heartbeat = false});
  IdempotentEventProcessor email(checker_, {.scope = "email", .heartbeat = false});
  auto env = make_envelope("e1");
  auto a = billing.process(env);
  auto b = email.process(env);
  EXPECT_TRUE(a.should_process());
  EXPECT_TRUE(b.should_process());
  EXPECT_NE(a.key(), b.key());
  a.mark_completed("1");
  b.mark_completed("2");
}

TEST_F(ProcessorTest, MismatchThrows) {
  auto ctx = processor_.process(make_envelope("e1", R"({"amount":1})"));
  EXPECT_THROW(processor_.process(make_envelope("e1", R"({"amount":2})")), KeyMismatchError);
  ctx.mark_completed("done");
}

TEST_F(ProcessorTest, OversizedResultMarksFailedRetryable) {
  auto checker = std::make_shared<IdempotencyChecker>(store_, CheckerOptions{.max_result_bytes = 4});
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  auto ctx = processor.process(make_envelope("big"));
  EXPECT_THROW(ctx.mark_completed("too large"), ResultTooLargeError);
  auto record = checker->get(ctx.key());
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
  EXPECT_TRUE((*record)->retryable);
}

TEST(ProcessorOutage, FailClosedThrowsAndRunsNothing) {
  auto store = std::make_shared<testing::OutageStore>(MemoryStore::create());
  auto checker = std::make_shared<IdempotencyChecker>(store);
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  store->down = true;
  EXPECT_THROW(processor.process(make_envelope("e1")), StoreUnavailableError);
}

TEST(ProcessorOutage, FailOpenRunsUnprotectedAndCountsIt) {
  struct CountingObserver : Observer {
    std::atomic<int> fail_open{0};
    void on_fail_open(std::string_view, const Error&) override { ++fail_open; }
  };
  auto observer = std::make_shared<CountingObserver>();
  auto store = std::make_shared<testing::OutageStore>(MemoryStore::create());
  auto checker = std::make_shared<IdempotencyChecker>(
      store, CheckerOptions{.outage_policy = OutagePolicy::kFailOpen, .observer = observer});
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  store->down = true;
  auto ctx = processor.process(make_envelope("e1"));
  EXPECT_TRUE(ctx.should_process());
  EXPECT_TRUE(ctx.is_unprotected());
  ctx.mark_completed("ran anyway");
  EXPECT_EQ(observer->fail_open.load(), 1);
}

TEST(ProcessorHeartbeat, KeepsALongHandlerFromBeingTakenOver) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create(), CheckerOptions{.lease = 300ms});
  IdempotentEventProcessor processor(checker, {.heartbeat = true, .heartbeat_interval = 50ms});
  auto env = make_envelope("slow");
  auto ctx = processor.process(env);
  ASSERT_TRUE(ctx.should_process());
  std::this_thread::sleep_for(900ms);  // three leases long
  auto dup = processor.process(env);
  EXPECT_EQ(dup.status(), ClaimStatus::kInProgress);
  ctx.mark_completed("done");
}

TEST(ProcessorHeartbeat, WithoutHeartbeatTheLeaseRunsOut) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create(), CheckerOptions{.lease = 100ms});
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  auto env = make_envelope("slow");
  auto ctx = processor.process(env);
  std::this_thread::sleep_for(250ms);
  auto second = processor.process(env);
  EXPECT_TRUE(second.should_process());
  EXPECT_TRUE(second.is_takeover());
  EXPECT_THROW(ctx.mark_completed("late"), LeaseLostError);
  second.mark_completed("done");
}

TEST(ProcessorWait, DuplicateWaitsForTheOriginalResult) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  IdempotentEventProcessor processor(checker, {.wait_for_in_progress = 2s, .heartbeat = false});
  auto env = make_envelope("e1");
  auto original = processor.process(env);
  ASSERT_TRUE(original.should_process());
  auto waiter = std::async(std::launch::async, [&] {
    auto ctx = processor.process(env);
    return std::make_pair(ctx.status(), ctx.cached_result());
  });
  std::this_thread::sleep_for(100ms);
  original.mark_completed("the result");
  auto [status, result] = waiter.get();
  EXPECT_EQ(status, ClaimStatus::kCompleted);
  EXPECT_EQ(result, "the result");
}

TEST(ProcessorWait, TheGuardDoesNotWaitUnlessAsked) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  auto original = processor.process(make_envelope("e1"));
  ASSERT_TRUE(original.should_process());
  const auto start = std::chrono::steady_clock::now();
  auto dup = processor.process(make_envelope("e1"));
  EXPECT_TRUE(dup.in_progress());
  EXPECT_LT(std::chrono::steady_clock::now() - start, kDefaultInProgressWait);
}

TEST(ProcessorOptions, OutOfRangeOptionsAreConfigurationErrors) {
  using std::chrono::milliseconds;
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create(), CheckerOptions{.lease = 1s});
  for (const ProcessorOptions& bad : {ProcessorOptions{.wait_for_in_progress = milliseconds(-1)},
                                      ProcessorOptions{.wait_for_in_progress = kMaxInProgressWait + milliseconds(1)},
                                      ProcessorOptions{.wait_for_in_progress = milliseconds::max()},
                                      ProcessorOptions{.heartbeat_interval = milliseconds(-1)},
                                      ProcessorOptions{.heartbeat_interval = milliseconds::max()},
                                      // Not shorter than the lease: the lease would lapse between beats.
                                      ProcessorOptions{.heartbeat_interval = 1s}}) {
    EXPECT_THROW(IdempotentEventProcessor(checker, bad), ConfigurationError);
  }
  EXPECT_FALSE((ProcessorOptions{.wait_for_in_progress = milliseconds::max()}.validate()));
  EXPECT_TRUE((ProcessorOptions{.wait_for_in_progress = kMaxInProgressWait, .heartbeat_interval = 999ms}.validate()));
  EXPECT_NO_THROW(IdempotentEventProcessor(checker, {.heartbeat_interval = 999ms}));
  EXPECT_NO_THROW(IdempotentEventProcessor(checker, {.heartbeat = false, .heartbeat_interval = 5s}));
}

TEST(ProcessorAsync, CompletionFromAnotherThread) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  std::promise<IdempotentEventProcessor::AsyncOutcome> done;
  std::thread worker;
  processor.process_async(
      make_envelope("e1"),
      [&](const Envelope&, ProcessingContext& ctx, IdempotentEventProcessor::Completion completion) {
        EXPECT_TRUE(ctx.should_process());
        worker = std::thread([completion] { completion.succeed("async result"); });
      },
      [&](IdempotentEventProcessor::AsyncOutcome outcome) { done.set_value(std::move(outcome)); });
  auto outcome = done.get_future().get();
  worker.join();
  EXPECT_EQ(outcome.status, ClaimStatus::kAcquired);
  EXPECT_EQ(outcome.result, "async result");

  std::promise<IdempotentEventProcessor::AsyncOutcome> replay;
  processor.process_async(
      make_envelope("e1"),
      [](const Envelope&, ProcessingContext&, IdempotentEventProcessor::Completion) {
        ADD_FAILURE() << "a duplicate must not run";
      },
      [&](IdempotentEventProcessor::AsyncOutcome o) { replay.set_value(std::move(o)); });
  auto replayed = replay.get_future().get();
  EXPECT_EQ(replayed.status, ClaimStatus::kCompleted);
  EXPECT_EQ(replayed.result, "async result");
}

TEST(ProcessorAsync, DroppedCompletionFailsTheClaim) {
  auto checker = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  bool reported = false;
  processor.process_async(
      make_envelope("e1"), [](const Envelope&, ProcessingContext&, IdempotentEventProcessor::Completion) {},
      [&](IdempotentEventProcessor::AsyncOutcome outcome) {
        reported = true;
        EXPECT_TRUE(outcome.error);
      });
  EXPECT_TRUE(reported);
  auto record = checker->get("idempotency:events:e1");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, ProcessingStatus::kFailed);
}

}  // namespace
}  // namespace idem
