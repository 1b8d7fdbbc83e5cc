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
    EXPECT_FALSE(e.in_progress());
    EXPECT_EQ(e.cached_result(), "r");
    EXPECT_EQ(e.key(), "idempotency:events:e1");
  }
}

TEST_F(HandlerTest, InProgressDuplicateIsReportedAsSuch) {
  auto opts = options();
  opts.skip_on_duplicate = false;
  auto handle = idempotent_event_handler([](const Envelope&) { return std::string("r"); }, opts);
  auto held = checker_->claim(make_envelope("e1"));  // another worker is on it
  ASSERT_TRUE(held && held->outcome.acquired());
  try {
    (void)handle(make_envelope("e1"));
    FAIL() << "expected DuplicateEventError";
  } catch (const DuplicateEventError& e) {
    EXPECT_TRUE(e.in_progress());
    EXPECT_FALSE(e.cached_result());
  }
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
