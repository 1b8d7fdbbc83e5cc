#include "idem/core/handler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "idem/stores/memory.h"
#include "unit/patterns_support.h"

namespace idem {
namespace {

using namespace std::chrono_literals;
using testing::make_envelope;

class HandlerTest : public ::testing::Test {
 protected:
  std::shared_ptr<IdempotencyChecker> checker_ = std::make_shared<IdempotencyChecker>(MemoryStore::create());
  HandlerOptions options() { return {.processor = {.heartbeat = false}, .checker = checker_}; }
};

TEST_F(HandlerTest, RunsOncePerKeyAndReplaysTheResult) {
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope& e) {
        ++runs;
        return R"({"charged":")" + e.event_id + R"("})";
      },
      options());
  auto env = make_envelope("e1");
  EXPECT_EQ(handle(env), R"({"charged":"e1"})");
  EXPECT_EQ(handle(env), R"({"charged":"e1"})");
  EXPECT_EQ(handle(make_envelope("e2")), R"({"charged":"e2"})");
  EXPECT_EQ(runs, 2);
}

TEST_F(HandlerTest, ReturnCachedResultFalseGivesNothingOnReplay) {
  auto opts = options();
  opts.return_cached_result = false;
  auto handle = idempotent_event_handler([](const Envelope&) { return std::string("r"); }, opts);
  EXPECT_EQ(handle(make_envelope("e1")), "r");
  EXPECT_EQ(handle(make_envelope("e1")), std::nullopt);
}

TEST_F(HandlerTest, SkipOnDuplicateFalseThrowsWithTheCachedResult) {
  auto opts = options();
  opts.skip_on_duplicate = false;
  auto handle = idempotent_event_handler([](const Envelope&) { return std::string("r"); }, opts);
  (void)handle(make_envelope("e1"));
  try {
    (void)handle(make_envelope("e1"));
    FAIL() << "expected DuplicateEventError";
  } catch (const DuplicateEventError& e) {
    EXPECT_EQ(e.status(), ClaimStatus::kCompleted);
    EXPECT_EQ(e.cached_result(), "r");
    EXPECT_EQ(e.key(), "idempotency:events:e1");
    // A duplicate is not bad input: code() must not send it to a dead letter.
    EXPECT_EQ(e.code(), ErrorCode::kDuplicate);
    EXPECT_FALSE(e.error().retryable());
  }
}

// Issue 7 item 4: an in-progress duplicate must never look like success,
// whatever skip_on_duplicate says.
TEST_F(HandlerTest, InProgressDuplicateThrowsEventInProgressAfterTheWait) {
  for (const bool skip : {true, false}) {
    auto opts = options();
    opts.skip_on_duplicate = skip;
    opts.processor.wait_for_in_progress = 30ms;
    int runs = 0;
    auto handle = idempotent_event_handler(
        [&](const Envelope&) {
          ++runs;
          return std::string("r");
        },
        opts);
    const std::string id = skip ? "skip" : "noskip";
    auto held = checker_->claim(make_envelope(id));  // another worker is on it
    ASSERT_TRUE(held && held->outcome.acquired());
    try {
      (void)handle(make_envelope(id));
      FAIL() << "an in-progress duplicate returned normally (skip_on_duplicate=" << skip << ")";
    } catch (const EventInProgressError& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInProgress);
      EXPECT_TRUE(e.error().retryable());
      EXPECT_EQ(e.key(), "idempotency:events:" + id);
      ASSERT_TRUE(e.record());
      EXPECT_EQ(e.record()->token, held->outcome.token);
      EXPECT_GE(e.waited(), 30ms);
    }
    EXPECT_EQ(runs, 0);
  }
}

TEST_F(HandlerTest, WithDefaultOptionsAnInProgressDuplicateWaitsForTheOriginal) {
  HandlerOptions opts{.checker = checker_};  // wait_for_in_progress unset
  ASSERT_FALSE(opts.processor.wait_for_in_progress.has_value());
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope&) {
        ++runs;
        return std::string("mine");
      },
      opts);
  auto held = checker_->claim(make_envelope("e1"));
  ASSERT_TRUE(held && held->outcome.acquired());
  std::thread original([&] {
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(checker_->complete(held->key, held->outcome.token, "original's"));
  });
  // Well inside kDefaultInProgressWait: the duplicate gets the original's
  // result instead of a quiet nullopt.
  EXPECT_EQ(handle(make_envelope("e1")), "original's");
  original.join();
  EXPECT_EQ(runs, 0);
}

TEST_F(HandlerTest, ProcessWithIdempotencyThrowsForAnInProgressDuplicate) {
  auto opts = options();
  opts.processor.wait_for_in_progress = 10ms;
  auto held = checker_->claim(make_envelope("e1"));
  ASSERT_TRUE(held && held->outcome.acquired());
  auto handler = [](const Envelope&, ProcessingContext&) { return std::string("r"); };
  EXPECT_THROW((void)process_with_idempotency(make_envelope("e1"), handler, opts), EventInProgressError);
  IdempotentEventProcessor processor(checker_, opts.processor);
  EXPECT_THROW((void)process_with_idempotency(processor, make_envelope("e1"), handler), EventInProgressError);
}

// process_with_idempotency(envelope, handler, options) takes HandlerOptions:
// it must apply them as the wrapper does.
TEST_F(HandlerTest, ProcessWithIdempotencyAppliesTheDuplicateOptions) {
  auto handler = [](const Envelope&, ProcessingContext&) { return std::string("r"); };
  auto opts = options();
  EXPECT_EQ(process_with_idempotency(make_envelope("e1"), handler, opts).disposition, Disposition::kExecuted);
  opts.skip_on_duplicate = false;
  EXPECT_THROW((void)process_with_idempotency(make_envelope("e1"), handler, opts), DuplicateEventError);
  opts.skip_on_duplicate = true;
  opts.return_cached_result = false;
  auto replay = process_with_idempotency(make_envelope("e1"), handler, opts);
  EXPECT_EQ(replay.disposition, Disposition::kReplayed);
  EXPECT_EQ(replay.result, std::nullopt);
}

TEST_F(HandlerTest, ResultTooLargeIsRetryable) {
  EXPECT_EQ(default_failure_classifier(
                std::make_exception_ptr(ResultTooLargeError(Error(ErrorCode::kResultTooLarge, "big")))),
            FailureKind::kRetryable);
  EXPECT_EQ(default_failure_classifier(std::make_exception_ptr(TerminalError("no"))), FailureKind::kTerminal);
  // A handler that throws it (say, from a nested checker) is retried, not
  // replayed as a terminal failure.
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope&) -> std::string {
        if (++runs == 1) throw ResultTooLargeError(Error(ErrorCode::kResultTooLarge, "too big"));
        return "small";
      },
      options());
  EXPECT_THROW((void)handle(make_envelope("e1")), ResultTooLargeError);
  EXPECT_EQ(handle(make_envelope("e1")), "small");
  EXPECT_EQ(runs, 2);
}

TEST_F(HandlerTest, ThrowingHandlerRethrowsAndTheNextDeliveryRunsAgain) {
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope&) -> std::string {
        if (++runs == 1) throw std::runtime_error("transient");
        return "ok";
      },
      options());
  EXPECT_THROW((void)handle(make_envelope("e1")), std::runtime_error);
  EXPECT_EQ(handle(make_envelope("e1")), "ok");
  EXPECT_EQ(runs, 2);
}

TEST_F(HandlerTest, TerminalErrorIsStoredAndReplayed) {
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope&) -> std::string {
        ++runs;
        throw TerminalError("card declined");
      },
      options());
  EXPECT_THROW((void)handle(make_envelope("e1")), TerminalError);
  try {
    (void)handle(make_envelope("e1"));
    FAIL();
  } catch (const TerminalError& e) {
    EXPECT_STREQ(e.what(), "card declined");
  }
  EXPECT_EQ(runs, 1);
}

TEST_F(HandlerTest, ClassifierDecidesTheFailureKind) {
  auto opts = options();
  opts.processor.classify_failure = [](const std::exception_ptr&) { return FailureKind::kTerminal; };
  int runs = 0;
  auto handle = idempotent_event_handler(
      [&](const Envelope&) -> std::string {
        ++runs;
        throw std::invalid_argument("bad amount");
      },
      opts);
  EXPECT_THROW((void)handle(make_envelope("e1")), std::invalid_argument);
  EXPECT_THROW((void)handle(make_envelope("e1")), TerminalError);
  EXPECT_EQ(runs, 1);
}

TEST_F(HandlerTest, VoidAndContextHandlersAreSupported) {
  int runs = 0;
  auto void_handler = idempotent_event_handler([&](const Envelope&) { ++runs; }, options());
  EXPECT_EQ(void_handler(make_envelope("v")), "null");
  Token seen = 0;
  auto ctx_handler = idempotent_event_handler(
      [&](const Envelope&, ProcessingContext& ctx) {
        seen = ctx.token();  // the fencing token for downstream writes
        return std::string("with ctx");
      },
      options());
  EXPECT_EQ(ctx_handler(make_envelope("c")), "with ctx");
  EXPECT_GT(seen, 0U);
  EXPECT_EQ(runs, 1);
}

TEST_F(HandlerTest, ProcessWithIdempotencyReportsTheDisposition) {
  auto opts = options();
  auto handler = [](const Envelope&, ProcessingContext&) { return std::string("r"); };
  auto first = process_with_idempotency(make_envelope("e1"), handler, opts);
  EXPECT_EQ(first.disposition, Disposition::kExecuted);
  auto second = process_with_idempotency(make_envelope("e1"), handler, opts);
  EXPECT_EQ(second.disposition, Disposition::kReplayed);
  EXPECT_EQ(second.result, "r");
}

TEST_F(HandlerTest, DefaultCheckerComesFromTheEnvironment) {
  set_idempotency_checker(checker_);
  EXPECT_EQ(get_idempotency_checker(), checker_);
  auto handle = idempotent_event_handler([](const Envelope&) { return std::string("x"); });
  EXPECT_EQ(handle(make_envelope("default")), "x");
  set_idempotency_checker(nullptr);
}

// The issue's concurrency property, through the public wrapper: 16 threads
// deliver the same 1,000 events; every handler body runs exactly once per key.
TEST_F(HandlerTest, SixteenThreadsThousandKeysEachRunsOnce) {
  constexpr int kKeys = 1000;
  constexpr int kThreads = 16;
  std::vector<std::atomic<int>> runs(kKeys);
  auto handle = idempotent_event_handler(
      [&](const Envelope& e) {
        runs[static_cast<std::size_t>(std::stoi(e.event_id))].fetch_add(1);
        return std::string("done");
      },
      options());
  std::vector<Envelope> events;
  for (int i = 0; i < kKeys; ++i) events.push_back(make_envelope(std::to_string(i)));
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeys; ++i) {
        // Each thread walks the keys from a different start to maximise overlap.
        const auto& env = events[static_cast<std::size_t>((i + t * 61) % kKeys)];
        try {
          (void)handle(env);
        } catch (...) {
          ++errors;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(runs[static_cast<std::size_t>(i)].load(), 1) << "key " << i;
}

}  // namespace
}  // namespace idem
