// File: tests/conformance/store_contract.cpp
//
// The bodies of the StoreContract suite (see store_contract.h). Every row of
// the state machine in store.h / SPEC §2 has a test here, plus the promises
// around it: token monotonicity across remove, expiry and takeover; stale
// owners write nothing; a record never expires under a live lease; claim_many
// keeps request order; scan pages; stats count; 16 threads race on 1,000 keys.
#include "conformance/store_contract.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "conformance/async_as_sync_store.h"
#include "idem/core/limits.h"

namespace idem::conformance {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

// Short real leases: long enough that a claim's own checks run well inside
// them even under sanitizers, short enough to keep the suite fast.
constexpr milliseconds kShortLease = 150ms;
constexpr milliseconds kPastShortLease = 450ms;
constexpr milliseconds kLongLease = 60s;
constexpr milliseconds kLongTtl = 3600s;

std::string random_hex(std::size_t n) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(n, '0');
  for (char& c : s) c = kDigits[rng() % 16];
  return s;
}

ClaimRequest req(std::string_view key, milliseconds lease = kLongLease, milliseconds ttl = kLongTtl,
                 std::string_view fingerprint = {}) {
  ClaimRequest r;
  r.key = key;
  r.event_id = "evt-1";
  r.event_type = "order.created";
  r.fingerprint = fingerprint;
  r.lease = lease;
  r.ttl = ttl;
  return r;
}

CompleteRequest done(std::string_view key, Token token, std::string_view result, milliseconds ttl = kLongTtl) {
  CompleteRequest r;
  r.key = key;
  r.token = token;
  r.result = result;
  r.ttl = ttl;
  return r;
}

FailRequest failed(std::string_view key, Token token, std::string_view error, bool retryable,
                   milliseconds ttl = kLongTtl) {
  FailRequest r;
  r.key = key;
  r.token = token;
  r.error = error;
  r.retryable = retryable;
  r.ttl = ttl;
  return r;
}

Timestamp now() { return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now()); }

// Unwraps a Result, failing the test with the store's message otherwise.
template <typename T>
T must(Result<T> r, const char* what) {
  if (!r) {
    ADD_FAILURE() << what << " failed: " << r.error().to_string();
    throw std::runtime_error(std::string(what) + ": " + r.error().to_string());
  }
  return std::move(r).value();
}

#define MUST(expr) must((expr), #expr)
#define EXPECT_OK(expr)                                              \
  do {                                                               \
    const ::idem::Status _s = (expr);                                \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s.error().to_string(); \
  } while (0)
#define EXPECT_ERROR(expr, code_)                                                          \
  do {                                                                                     \
    const ::idem::Status _s = (expr);                                                      \
    ASSERT_FALSE(_s.ok()) << #expr << " succeeded, expected " << ::idem::to_string(code_); \
    EXPECT_EQ(_s.error().code(), code_) << #expr << ": " << _s.error().to_string();        \
  } while (0)

}  // namespace

int contract_suite_anchor() { return 1; }

StoreFixture through_async_api(StoreFixture fixture) {
  return StoreFixture{fixture.name + "ThroughAsync", [make = std::move(fixture.make)]() -> std::shared_ptr<Store> {
                        std::shared_ptr<Store> inner = make();
                        if (!inner) return nullptr;
                        return std::make_shared<AsyncAsSyncStore>(std::move(inner));
                      }};
}

void StoreContract::SetUp() {
  store_ = GetParam().make();
  ASSERT_NE(store_, nullptr) << "fixture " << GetParam().name << " made no store";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  prefix_ = "idem-contract:" + random_hex(12) + ":" + info->name() + ":";
  // Parametrized test names contain '/', keep keys tidy.
  std::replace(prefix_.begin(), prefix_.end(), '/', '.');
}

void StoreContract::TearDown() {
  if (!store_) return;
  // Best effort: leave nothing behind on shared servers.
  ScanOptions opts;
  opts.prefix = prefix_;
  opts.limit = 1000;
  for (int pages = 0; pages < 100; ++pages) {
    Result<ScanPage> page = store_->scan(opts);
    if (!page) break;
    for (const IdempotencyRecord& r : page->records) (void)store_->remove(r.idempotency_key);
    if (page->next_cursor.empty()) break;
    opts.cursor = page->next_cursor;
  }
  store_.reset();
}

std::string StoreContract::key(std::string_view suffix) const { return prefix_ + std::string(suffix); }

// ---------------------------------------------------------------------------
// The state machine, row by row.

TEST_P(StoreContract, BasicsKindPingGetAbsent) {
  EXPECT_FALSE(store().kind().empty());
  EXPECT_OK(store().ping());
  EXPECT_EQ(MUST(store().get(key("absent"))), std::nullopt);
}

TEST_P(StoreContract, AbsentClaimAcquiresNew) {
  const std::string k = key("a");
  const Timestamp before = now();
  ClaimRequest r = req(k, 5s, kLongTtl, "fp-1");
  r.event_id = "evt-42";
  ClaimOutcome out = MUST(store().claim(r));
  const Timestamp after = now();
  ASSERT_EQ(out.status, ClaimStatus::kAcquired);
  EXPECT_EQ(out.acquire_kind, AcquireKind::kNew);
  EXPECT_EQ(out.attempt, 1u);
  EXPECT_GT(out.token, 0u);
  EXPECT_GE(out.lease_expires_at, before + 5s - 5ms);  // servers' clocks may round
  EXPECT_LE(out.lease_expires_at, after + 5s + 1s);
  EXPECT_FALSE(out.checkpoint.has_value());
  EXPECT_FALSE(out.record.has_value());

  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->idempotency_key, k);
  EXPECT_EQ(rec->event_id, "evt-42");
  EXPECT_EQ(rec->event_type, "order.created");
  EXPECT_EQ(rec->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(rec->attempt, 1u);
  EXPECT_EQ(rec->token, out.token);
  EXPECT_EQ(rec->fingerprint, "fp-1");
  EXPECT_EQ(rec->lease_expires_at, out.lease_expires_at);
  EXPECT_GE(rec->expires_at, rec->lease_expires_at);
  EXPECT_GE(rec->first_seen_at, before - 1s);
  EXPECT_LE(rec->first_seen_at, after + 1s);
  EXPECT_FALSE(rec->result.has_value());
  EXPECT_FALSE(rec->completed_at.has_value());
}

TEST_P(StoreContract, ProcessingWithLiveLeaseIsInProgressAndUnchanged) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k)));
  ASSERT_TRUE(first.acquired());
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  ClaimOutcome dup = MUST(store().claim(req(k)));
  EXPECT_EQ(dup.status, ClaimStatus::kInProgress);
  ASSERT_TRUE(dup.record.has_value());
  EXPECT_EQ(dup.record->token, first.token);
  EXPECT_EQ(dup.record->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(dup.record->lease_expires_at, first.lease_expires_at);
  EXPECT_EQ(MUST(store().get(k)), before);
}

TEST_P(StoreContract, ProcessingWithExpiredLeaseIsTakenOver) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k, kShortLease)));
  ASSERT_TRUE(first.acquired());
  EXPECT_OK(store().checkpoint(k, first.token, Checkpoint{"step-2", std::string("half\0done", 9)}));
  std::this_thread::sleep_for(kPastShortLease);

  ClaimOutcome second = MUST(store().claim(req(k)));
  ASSERT_EQ(second.status, ClaimStatus::kAcquired);
  EXPECT_EQ(second.acquire_kind, AcquireKind::kTakeover);
  EXPECT_EQ(second.attempt, 2u);
  EXPECT_GT(second.token, first.token);
  ASSERT_TRUE(second.checkpoint.has_value());
  EXPECT_EQ(second.checkpoint->name, "step-2");
  EXPECT_EQ(second.checkpoint->data, std::string("half\0done", 9));

  // The first worker wakes up: everything it tries is refused, nothing written.
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  EXPECT_ERROR(store().complete(done(k, first.token, "stale result")), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().fail(failed(k, first.token, "stale error", false)), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().extend(k, first.token, 10s), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().checkpoint(k, first.token, Checkpoint{"stale", "x"}), ErrorCode::kLeaseLost);
  std::optional<IdempotencyRecord> after = MUST(store().get(k));
  EXPECT_EQ(after, before);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(after->token, second.token);
  EXPECT_FALSE(after->result.has_value());

  // The new owner completes normally.
  EXPECT_OK(store().complete(done(k, second.token, "fresh result")));
  ClaimOutcome dup = MUST(store().claim(req(k)));
  ASSERT_EQ(dup.status, ClaimStatus::kCompleted);
  EXPECT_EQ(dup.record->result, "fresh result");
}

TEST_P(StoreContract, FailedRetryableIsRetried) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k)));
  ASSERT_TRUE(first.acquired());
  EXPECT_OK(store().checkpoint(k, first.token, Checkpoint{"cp", "data"}));
  EXPECT_OK(store().fail(failed(k, first.token, "timeout talking to bank", true)));
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, ProcessingStatus::kFailed);
  EXPECT_EQ(rec->error, "timeout talking to bank");
  EXPECT_TRUE(rec->retryable);

  ClaimOutcome retry = MUST(store().claim(req(k)));
  ASSERT_EQ(retry.status, ClaimStatus::kAcquired);
  EXPECT_EQ(retry.acquire_kind, AcquireKind::kRetry);
  EXPECT_EQ(retry.attempt, 2u);
  EXPECT_GT(retry.token, first.token);
  ASSERT_TRUE(retry.checkpoint.has_value());
  EXPECT_EQ(retry.checkpoint->name, "cp");
  rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(rec->token, retry.token);
  EXPECT_EQ(rec->attempt, 2u);
  // The old owner cannot complete the retried record.
  EXPECT_ERROR(store().complete(done(k, first.token, "late")), ErrorCode::kLeaseLost);
}

TEST_P(StoreContract, FailedTerminalReplaysErrorUnchanged) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k)));
  ASSERT_TRUE(first.acquired());
  EXPECT_OK(store().fail(failed(k, first.token, "card declined", false)));
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  ASSERT_TRUE(before.has_value());
  EXPECT_FALSE(before->retryable);
  EXPECT_TRUE(before->completed_at.has_value());
  ClaimOutcome dup = MUST(store().claim(req(k)));
  EXPECT_EQ(dup.status, ClaimStatus::kFailed);
  ASSERT_TRUE(dup.record.has_value());
  EXPECT_EQ(dup.record->error, "card declined");
  EXPECT_EQ(dup.record->status, ProcessingStatus::kFailed);
  EXPECT_EQ(MUST(store().get(k)), before);
}

TEST_P(StoreContract, CompletedReplaysResultUnchanged) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k)));
  ASSERT_TRUE(first.acquired());
  EXPECT_OK(store().complete(done(k, first.token, R"({"charge":"ch_1"})")));
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->status, ProcessingStatus::kCompleted);
  EXPECT_EQ(before->result, R"({"charge":"ch_1"})");
  EXPECT_TRUE(before->completed_at.has_value());
  EXPECT_EQ(before->token, first.token);
  for (int i = 0; i < 3; ++i) {
    ClaimOutcome dup = MUST(store().claim(req(k)));
    EXPECT_EQ(dup.status, ClaimStatus::kCompleted);
    ASSERT_TRUE(dup.record.has_value());
    EXPECT_EQ(dup.record->result, R"({"charge":"ch_1"})");
  }
  EXPECT_EQ(MUST(store().get(k)), before);
}

TEST_P(StoreContract, FingerprintMismatchInEveryState) {
  // PROCESSING (live lease), COMPLETED, FAILED terminal, FAILED retryable and
  // PROCESSING with an expired lease: the mismatch is reported first, always.
  const std::string processing = key("processing");
  const std::string completed = key("completed");
  const std::string terminal = key("terminal");
  const std::string retryable = key("retryable");
  const std::string stale = key("stale");
  ASSERT_TRUE(MUST(store().claim(req(processing, kLongLease, kLongTtl, "fp-A"))).acquired());
  ClaimOutcome c = MUST(store().claim(req(completed, kLongLease, kLongTtl, "fp-A")));
  EXPECT_OK(store().complete(done(completed, c.token, "r")));
  ClaimOutcome t = MUST(store().claim(req(terminal, kLongLease, kLongTtl, "fp-A")));
  EXPECT_OK(store().fail(failed(terminal, t.token, "e", false)));
  ClaimOutcome rt = MUST(store().claim(req(retryable, kLongLease, kLongTtl, "fp-A")));
  EXPECT_OK(store().fail(failed(retryable, rt.token, "e", true)));
  ASSERT_TRUE(MUST(store().claim(req(stale, kShortLease, kLongTtl, "fp-A"))).acquired());
  std::this_thread::sleep_for(kPastShortLease);

  for (const std::string& k : {processing, completed, terminal, retryable, stale}) {
    SCOPED_TRACE(k);
    std::optional<IdempotencyRecord> before = MUST(store().get(k));
    ClaimOutcome out = MUST(store().claim(req(k, kLongLease, kLongTtl, "fp-B")));
    EXPECT_EQ(out.status, ClaimStatus::kMismatch);
    ASSERT_TRUE(out.record.has_value());
    EXPECT_EQ(out.record->fingerprint, "fp-A");
    EXPECT_EQ(MUST(store().get(k)), before) << "a mismatching claim must change nothing";
  }
  // An empty fingerprint on either side is "not checked": no mismatch.
  EXPECT_EQ(MUST(store().claim(req(completed))).status, ClaimStatus::kCompleted);
  const std::string unchecked = key("unchecked");
  ASSERT_TRUE(MUST(store().claim(req(unchecked))).acquired());
  EXPECT_EQ(MUST(store().claim(req(unchecked, kLongLease, kLongTtl, "fp-B"))).status, ClaimStatus::kInProgress);
  // The same fingerprint is a plain duplicate.
  EXPECT_EQ(MUST(store().claim(req(completed, kLongLease, kLongTtl, "fp-A"))).status, ClaimStatus::kCompleted);
}

// ---------------------------------------------------------------------------
// Owner operations.

TEST_P(StoreContract, StaleTokenWritesNothing) {
  const std::string k = key("a");
  ClaimOutcome out = MUST(store().claim(req(k)));
  ASSERT_TRUE(out.acquired());
  const Token wrong = out.token + 1000;
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  EXPECT_ERROR(store().complete(done(k, wrong, "x")), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().fail(failed(k, wrong, "x", true)), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().fail(failed(k, wrong, "x", false)), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().extend(k, wrong, 100s), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().checkpoint(k, wrong, Checkpoint{"n", "d"}), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().complete(done(k, 0, "x")), ErrorCode::kLeaseLost);
  EXPECT_EQ(MUST(store().get(k)), before);
}

TEST_P(StoreContract, OwnerOperationsOnFinishedOrAbsentRecordAreLeaseLost) {
  const std::string k = key("a");
  ClaimOutcome out = MUST(store().claim(req(k)));
  ASSERT_TRUE(out.acquired());
  EXPECT_OK(store().complete(done(k, out.token, "first")));
  std::optional<IdempotencyRecord> before = MUST(store().get(k));
  // Same token, but the record is no longer PROCESSING.
  EXPECT_ERROR(store().complete(done(k, out.token, "second")), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().fail(failed(k, out.token, "x", false)), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().extend(k, out.token, 10s), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().checkpoint(k, out.token, Checkpoint{"n", "d"}), ErrorCode::kLeaseLost);
  EXPECT_EQ(MUST(store().get(k)), before);

  const std::string none = key("never-claimed");
  EXPECT_ERROR(store().complete(done(none, 1, "x")), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().fail(failed(none, 1, "x", true)), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().extend(none, 1, 10s), ErrorCode::kLeaseLost);
  EXPECT_ERROR(store().checkpoint(none, 1, Checkpoint{"n", "d"}), ErrorCode::kLeaseLost);
  EXPECT_EQ(MUST(store().get(none)), std::nullopt) << "a refused operation must not create a record";
}

TEST_P(StoreContract, ExtendPushesLeaseForward) {
  const std::string k = key("a");
  ClaimOutcome out = MUST(store().claim(req(k, 300ms)));
  ASSERT_TRUE(out.acquired());
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(150ms);
    EXPECT_OK(store().extend(k, out.token, 1000ms));
  }
  // 450 ms after a 300 ms claim: alive only thanks to the heartbeats.
  ClaimOutcome dup = MUST(store().claim(req(k)));
  ASSERT_EQ(dup.status, ClaimStatus::kInProgress);
  EXPECT_GT(dup.record->lease_expires_at, out.lease_expires_at);
  EXPECT_GE(dup.record->expires_at, dup.record->lease_expires_at);
  EXPECT_EQ(dup.record->token, out.token);
  EXPECT_OK(store().complete(done(k, out.token, "ok")));
}

TEST_P(StoreContract, CheckpointIsKeptAndReplacedByOwner) {
  const std::string k = key("a");
  ClaimOutcome out = MUST(store().claim(req(k)));
  ASSERT_TRUE(out.acquired());
  EXPECT_OK(store().checkpoint(k, out.token, Checkpoint{"one", "1"}));
  EXPECT_OK(store().checkpoint(k, out.token, Checkpoint{"two", "2"}));
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  ASSERT_TRUE(rec->checkpoint.has_value());
  EXPECT_EQ(*rec->checkpoint, (Checkpoint{"two", "2"}));
  EXPECT_EQ(rec->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(rec->token, out.token);
}

// ---------------------------------------------------------------------------
// TTL and leases.

TEST_P(StoreContract, CompleteResetsTtl) {
  const std::string k = key("long");
  // Claimed with a short TTL, completed with a long one: the record must
  // outlive the claim's TTL.
  ClaimOutcome out = MUST(store().claim(req(k, 100ms, 200ms)));
  ASSERT_TRUE(out.acquired());
  EXPECT_OK(store().complete(done(k, out.token, "kept", kLongTtl)));
  std::this_thread::sleep_for(500ms);
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value()) << "complete() must reset the TTL";
  EXPECT_EQ(rec->status, ProcessingStatus::kCompleted);
  EXPECT_GT(rec->expires_at, now() + 3000s);

  // And the other way round: a short TTL on completion is honoured.
  const std::string s = key("short");
  ClaimOutcome out2 = MUST(store().claim(req(s, 100ms, kLongTtl)));
  ASSERT_TRUE(out2.acquired());
  EXPECT_OK(store().complete(done(s, out2.token, "gone soon", 200ms)));
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(MUST(store().get(s)), std::nullopt);
}

TEST_P(StoreContract, RecordNeverExpiresWhileLeaseIsLive) {
  const std::string k = key("a");
  // TTL shorter than the lease: the lease wins.
  ClaimOutcome out = MUST(store().claim(req(k, 1500ms, 100ms)));
  ASSERT_TRUE(out.acquired());
  std::this_thread::sleep_for(400ms);
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value()) << "expired under a live lease";
  EXPECT_GE(rec->expires_at, rec->lease_expires_at);
  (void)MUST(store().sweep());
  EXPECT_TRUE(MUST(store().get(k)).has_value()) << "sweep removed a record under a live lease";
  EXPECT_EQ(MUST(store().claim(req(k))).status, ClaimStatus::kInProgress);
  EXPECT_OK(store().complete(done(k, out.token, "done")));
}

TEST_P(StoreContract, ExpiredRecordIsAbsentAndClaimedAfresh) {
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k, 100ms, 100ms, "fp-A")));
  ASSERT_TRUE(first.acquired());
  EXPECT_OK(store().checkpoint(k, first.token, Checkpoint{"cp", "old life"}));
  EXPECT_OK(store().complete(done(k, first.token, "old", 150ms)));
  std::this_thread::sleep_for(kPastShortLease);
  EXPECT_EQ(MUST(store().get(k)), std::nullopt);
  // A new life: attempt 1, nothing carried over, even another fingerprint.
  ClaimOutcome second = MUST(store().claim(req(k, kLongLease, kLongTtl, "fp-B")));
  ASSERT_EQ(second.status, ClaimStatus::kAcquired);
  EXPECT_EQ(second.acquire_kind, AcquireKind::kNew);
  EXPECT_EQ(second.attempt, 1u);
  EXPECT_GT(second.token, first.token);
  EXPECT_FALSE(second.checkpoint.has_value());
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->fingerprint, "fp-B");
  EXPECT_FALSE(rec->result.has_value());
  EXPECT_FALSE(rec->checkpoint.has_value());
  EXPECT_ERROR(store().complete(done(k, first.token, "from an earlier life")), ErrorCode::kLeaseLost);
}

TEST_P(StoreContract, SweepRemovesOnlyExpired) {
  const std::string gone = key("gone");
  const std::string live = key("live");
  ClaimOutcome g = MUST(store().claim(req(gone, 50ms, 50ms)));
  EXPECT_OK(store().complete(done(gone, g.token, "x", 100ms)));
  ClaimOutcome l = MUST(store().claim(req(live)));
  ASSERT_TRUE(l.acquired());
  std::this_thread::sleep_for(400ms);
  (void)MUST(store().sweep());  // stores that expire by themselves report 0
  EXPECT_EQ(MUST(store().get(gone)), std::nullopt);
  EXPECT_TRUE(MUST(store().get(live)).has_value());
  ClaimOutcome again = MUST(store().claim(req(gone)));
  ASSERT_TRUE(again.acquired());
  EXPECT_GT(again.token, g.token) << "tokens must survive sweeping";
}

// ---------------------------------------------------------------------------
// Tokens across lives of a key, and remove().

TEST_P(StoreContract, TokensStrictlyIncreaseAcrossRemoveExpiryAndTakeover) {
  const std::string k = key("a");
  Token last = 0;
  auto expect_higher = [&](const ClaimOutcome& out, const char* how) {
    ASSERT_TRUE(out.acquired()) << how;
    EXPECT_GT(out.token, last) << how;
    last = out.token;
  };
  for (int round = 0; round < 3; ++round) {
    ClaimOutcome a = MUST(store().claim(req(k)));
    expect_higher(a, "new");
    EXPECT_TRUE(MUST(store().remove(k)));
    ClaimOutcome b = MUST(store().claim(req(k, kShortLease)));
    expect_higher(b, "after remove");
    EXPECT_ERROR(store().complete(done(k, a.token, "stale")), ErrorCode::kLeaseLost);
    std::this_thread::sleep_for(kPastShortLease);
    ClaimOutcome c = MUST(store().claim(req(k, kLongLease, 100ms)));
    expect_higher(c, "takeover");
    EXPECT_OK(store().fail(failed(k, c.token, "oops", true, 100ms)));
    ClaimOutcome d = MUST(store().claim(req(k, kLongLease, 100ms)));
    expect_higher(d, "retry");
    EXPECT_OK(store().complete(done(k, d.token, "r", 100ms)));
    std::this_thread::sleep_for(300ms);
    ClaimOutcome e = MUST(store().claim(req(k)));
    expect_higher(e, "after expiry");
    EXPECT_EQ(e.acquire_kind, AcquireKind::kNew);
    EXPECT_TRUE(MUST(store().remove(k)));
    (void)MUST(store().sweep());
  }
}

TEST_P(StoreContract, ClaimManyTokensAlsoSurviveRemove) {
  // Batched claims must honour the same token rule as single ones.
  std::vector<std::string> keys;
  std::vector<Token> before;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(key("b" + std::to_string(i)));
    before.push_back(MUST(store().claim(req(keys.back()))).token);
    EXPECT_TRUE(MUST(store().remove(keys.back())));
  }
  std::vector<ClaimRequest> batch;
  for (const std::string& k : keys) batch.push_back(req(k));
  std::vector<ClaimOutcome> outs = MUST(store().claim_many(batch));
  ASSERT_EQ(outs.size(), keys.size());
  for (std::size_t i = 0; i < outs.size(); ++i) {
    ASSERT_TRUE(outs[i].acquired()) << keys[i];
    EXPECT_EQ(outs[i].acquire_kind, AcquireKind::kNew);
    EXPECT_GT(outs[i].token, before[i]) << keys[i];
    EXPECT_ERROR(store().complete(done(keys[i], before[i], "stale")), ErrorCode::kLeaseLost);
  }
}

TEST_P(StoreContract, RemoveDeletesWhateverTheState) {
  const std::string p = key("processing");
  const std::string c = key("completed");
  const std::string f = key("failed");
  ClaimOutcome po = MUST(store().claim(req(p)));
  ClaimOutcome co = MUST(store().claim(req(c)));
  EXPECT_OK(store().complete(done(c, co.token, "r")));
  ClaimOutcome fo = MUST(store().claim(req(f)));
  EXPECT_OK(store().fail(failed(f, fo.token, "e", false)));
  for (const std::string& k : {p, c, f}) {
    SCOPED_TRACE(k);
    EXPECT_TRUE(MUST(store().remove(k)));
    EXPECT_EQ(MUST(store().get(k)), std::nullopt);
    EXPECT_FALSE(MUST(store().remove(k)));
    ClaimOutcome again = MUST(store().claim(req(k)));
    ASSERT_TRUE(again.acquired());
    EXPECT_EQ(again.acquire_kind, AcquireKind::kNew);
    EXPECT_EQ(again.attempt, 1u);
  }
  EXPECT_ERROR(store().complete(done(p, po.token, "stale")), ErrorCode::kLeaseLost);
  EXPECT_FALSE(MUST(store().remove(key("never"))));
}

// ---------------------------------------------------------------------------
// claim_many.

TEST_P(StoreContract, ClaimManyKeepsOrderAndMixesOutcomes) {
  const std::string fresh1 = key("fresh1");
  const std::string completed = key("completed");
  const std::string busy = key("busy");
  const std::string terminal = key("terminal");
  const std::string fresh2 = key("fresh2");
  const std::string mismatch = key("mismatch");
  ClaimOutcome co = MUST(store().claim(req(completed)));
  EXPECT_OK(store().complete(done(completed, co.token, "cached")));
  ASSERT_TRUE(MUST(store().claim(req(busy))).acquired());
  ClaimOutcome to = MUST(store().claim(req(terminal)));
  EXPECT_OK(store().fail(failed(terminal, to.token, "no", false)));
  ASSERT_TRUE(MUST(store().claim(req(mismatch, kLongLease, kLongTtl, "fp-A"))).acquired());

  std::vector<ClaimRequest> batch = {req(fresh1),
                                     req(completed),
                                     req(busy),
                                     req(terminal),
                                     req(fresh2),
                                     req(fresh1),
                                     req(mismatch, kLongLease, kLongTtl, "fp-B")};
  std::vector<ClaimOutcome> outs = MUST(store().claim_many(batch));
  ASSERT_EQ(outs.size(), batch.size());
  EXPECT_EQ(outs[0].status, ClaimStatus::kAcquired);
  EXPECT_EQ(outs[1].status, ClaimStatus::kCompleted);
  ASSERT_TRUE(outs[1].record.has_value());
  EXPECT_EQ(outs[1].record->result, "cached");
  EXPECT_EQ(outs[2].status, ClaimStatus::kInProgress);
  EXPECT_EQ(outs[3].status, ClaimStatus::kFailed);
  EXPECT_EQ(outs[4].status, ClaimStatus::kAcquired);
  EXPECT_EQ(outs[5].status, ClaimStatus::kInProgress) << "the same key twice in one batch is claimed once";
  ASSERT_TRUE(outs[5].record.has_value());
  EXPECT_EQ(outs[5].record->token, outs[0].token);
  EXPECT_EQ(outs[6].status, ClaimStatus::kMismatch);
  EXPECT_OK(store().complete(done(fresh1, outs[0].token, "a")));
  EXPECT_OK(store().complete(done(fresh2, outs[4].token, "b")));

  std::vector<ClaimOutcome> none = MUST(store().claim_many(std::span<const ClaimRequest>()));
  EXPECT_TRUE(none.empty());
}

TEST_P(StoreContract, ClaimManyLargeBatch) {
  std::vector<std::string> keys;
  for (int i = 0; i < 250; ++i) keys.push_back(key("k" + std::to_string(i)));
  std::vector<ClaimRequest> batch;
  for (const std::string& k : keys) batch.push_back(req(k));
  std::vector<ClaimOutcome> outs = MUST(store().claim_many(batch));
  ASSERT_EQ(outs.size(), keys.size());
  for (std::size_t i = 0; i < outs.size(); ++i) {
    ASSERT_TRUE(outs[i].acquired()) << i;
    std::optional<IdempotencyRecord> rec = MUST(store().get(keys[i]));
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->token, outs[i].token) << "outcome " << i << " belongs to another key";
  }
  outs = MUST(store().claim_many(batch));
  for (const ClaimOutcome& o : outs) EXPECT_EQ(o.status, ClaimStatus::kInProgress);
}

TEST_P(StoreContract, ClaimManyRepeatedKeysAndMixedStates) {
  // 90 requests over 30 keys, each key three times in the batch, spread out
  // so that batched stores meet repeats inside one chunk and across chunks.
  // A third of the keys is already completed, a third in progress.
  constexpr int kKeys = 30;
  std::vector<std::string> keys;
  std::vector<Token> held(kKeys, 0);
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back(key("m" + std::to_string(i)));
    if (i % 3 == 1) {
      ClaimOutcome o = MUST(store().claim(req(keys.back())));
      EXPECT_OK(store().complete(done(keys.back(), o.token, "cached-" + std::to_string(i))));
    } else if (i % 3 == 2) {
      held[static_cast<std::size_t>(i)] = MUST(store().claim(req(keys.back()))).token;
    }
  }
  std::vector<ClaimRequest> batch;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kKeys; ++i) batch.push_back(req(keys[static_cast<std::size_t>((i * 7 + round) % kKeys)]));
  }
  std::vector<ClaimOutcome> outs = MUST(store().claim_many(batch));
  ASSERT_EQ(outs.size(), batch.size());
  std::map<std::string, Token> winner;
  for (std::size_t r = 0; r < batch.size(); ++r) {
    const std::string k(batch[r].key);
    const auto i = static_cast<std::size_t>(std::stoi(k.substr(k.rfind('m') + 1)));
    SCOPED_TRACE(k + " at " + std::to_string(r));
    if (i % 3 == 1) {
      ASSERT_EQ(outs[r].status, ClaimStatus::kCompleted);
      EXPECT_EQ(outs[r].record->result, "cached-" + std::to_string(i));
    } else if (i % 3 == 2) {
      ASSERT_EQ(outs[r].status, ClaimStatus::kInProgress);
      EXPECT_EQ(outs[r].record->token, held[i]);
    } else if (winner.count(k) == 0) {
      ASSERT_EQ(outs[r].status, ClaimStatus::kAcquired) << "the first occurrence acquires";
      winner[k] = outs[r].token;
    } else {
      ASSERT_EQ(outs[r].status, ClaimStatus::kInProgress) << "later occurrences see the first";
      EXPECT_EQ(outs[r].record->token, winner[k]);
    }
  }
  EXPECT_EQ(winner.size(), static_cast<std::size_t>(kKeys / 3));
  for (const auto& [k, token] : winner) EXPECT_OK(store().complete(done(k, token, "ok")));
}

// ---------------------------------------------------------------------------
// scan and stats.

TEST_P(StoreContract, ScanPagesThroughEverythingWithFilters) {
  std::set<std::string> all, completed, processing, failed_keys;
  for (int i = 0; i < 25; ++i) {
    const std::string k = key("k" + std::to_string(100 + i));
    all.insert(k);
    ClaimOutcome o = MUST(store().claim(req(k)));
    ASSERT_TRUE(o.acquired());
    if (i % 5 == 0) {
      EXPECT_OK(store().fail(failed(k, o.token, "e", true)));
      failed_keys.insert(k);
    } else if (i % 2 == 0) {
      EXPECT_OK(store().complete(done(k, o.token, "r")));
      completed.insert(k);
    } else {
      processing.insert(k);
    }
  }
  auto collect = [&](ScanOptions opts) {
    std::set<std::string> got;
    int pages = 0;
    for (;;) {
      ScanPage page = MUST(store().scan(opts));
      EXPECT_LE(page.records.size(), opts.limit);
      for (const IdempotencyRecord& r : page.records) {
        EXPECT_TRUE(r.idempotency_key.starts_with(prefix())) << r.idempotency_key;
        if (opts.status) {
          EXPECT_EQ(r.status, *opts.status);
        }
        got.insert(r.idempotency_key);
      }
      if (page.next_cursor.empty()) break;
      opts.cursor = page.next_cursor;
      if (++pages > 1000) {
        ADD_FAILURE() << "scan does not terminate";
        break;
      }
    }
    return got;
  };
  ScanOptions opts;
  opts.prefix = prefix();
  opts.limit = 7;
  EXPECT_EQ(collect(opts), all);
  opts.limit = 1;
  EXPECT_EQ(collect(opts), all);
  opts.limit = 100;
  EXPECT_EQ(collect(opts), all);

  opts.limit = 4;
  opts.status = ProcessingStatus::kCompleted;
  EXPECT_EQ(collect(opts), completed);
  opts.status = ProcessingStatus::kProcessing;
  EXPECT_EQ(collect(opts), processing);
  opts.status = ProcessingStatus::kFailed;
  EXPECT_EQ(collect(opts), failed_keys);

  // older_than: only the records first seen before the pause.
  std::this_thread::sleep_for(600ms);
  const std::string young = key("k999");
  ASSERT_TRUE(MUST(store().claim(req(young))).acquired());
  opts.status.reset();
  opts.older_than = 300ms;
  EXPECT_EQ(collect(opts), all);
  opts.older_than = 0ms;
  std::set<std::string> with_young = all;
  with_young.insert(young);
  EXPECT_EQ(collect(opts), with_young);

  // A prefix matching nothing.
  opts.prefix = prefix() + "zzz-none";
  EXPECT_TRUE(collect(opts).empty());
}

TEST_P(StoreContract, StatsCountByStatus) {
  StoreStats before = MUST(store().stats());
  const Timestamp start = now();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(MUST(store().claim(req(key("p" + std::to_string(i))))).acquired());
  for (int i = 0; i < 2; ++i) {
    const std::string k = key("c" + std::to_string(i));
    ClaimOutcome o = MUST(store().claim(req(k)));
    EXPECT_OK(store().complete(done(k, o.token, "r")));
  }
  ClaimOutcome f = MUST(store().claim(req(key("f"))));
  EXPECT_OK(store().fail(failed(key("f"), f.token, "e", false)));
  StoreStats after = MUST(store().stats());
  EXPECT_EQ(after.processing, before.processing + 3);
  EXPECT_EQ(after.completed, before.completed + 2);
  EXPECT_EQ(after.failed, before.failed + 1);
  ASSERT_TRUE(after.oldest_processing.has_value());
  EXPECT_EQ(after.oldest_processing->status, ProcessingStatus::kProcessing);
  EXPECT_LE(after.oldest_processing->first_seen_at, start + 1s);
  if (after.bytes) {
    EXPECT_GT(*after.bytes, 0u);
  }
}

// ---------------------------------------------------------------------------
// Values.

TEST_P(StoreContract, LargeBinaryValuesRoundTrip) {
  std::string result(1 << 20, '\0');
  std::mt19937 rng(7);
  for (char& c : result) c = static_cast<char>(rng() % 256);
  result[0] = '\0';
  result[result.size() / 2] = '\0';
  result.back() = '\0';
  const std::string k = key("big");
  ClaimOutcome o = MUST(store().claim(req(k)));
  ASSERT_TRUE(o.acquired());
  const std::string cp_data("\0\x01\xff checkpoint \0", 16);
  EXPECT_OK(store().checkpoint(k, o.token, Checkpoint{"bin", cp_data}));
  EXPECT_OK(store().complete(done(k, o.token, result)));
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  ASSERT_TRUE(rec->result.has_value());
  EXPECT_EQ(rec->result->size(), result.size());
  EXPECT_TRUE(*rec->result == result) << "1 MiB binary result did not round-trip";
  ASSERT_TRUE(rec->checkpoint.has_value());
  EXPECT_EQ(rec->checkpoint->data, cp_data);
  ClaimOutcome dup = MUST(store().claim(req(k)));
  ASSERT_EQ(dup.status, ClaimStatus::kCompleted);
  EXPECT_TRUE(dup.record->result == result);

  // An empty result is a result, not "no result".
  const std::string e = key("empty");
  ClaimOutcome eo = MUST(store().claim(req(e)));
  EXPECT_OK(store().complete(done(e, eo.token, "")));
  rec = MUST(store().get(e));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->result, std::optional<std::string>(""));

  // A binary error message with a NUL round-trips too.
  const std::string f = key("err");
  ClaimOutcome fo = MUST(store().claim(req(f)));
  const std::string err("bad\0byte", 8);
  EXPECT_OK(store().fail(failed(f, fo.token, err, false)));
  rec = MUST(store().get(f));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->error, err);
}

TEST_P(StoreContract, KeysWithUnusualBytes) {
  for (std::string suffix : {std::string("spaces and\ttabs"), std::string("utf8-\xc3\xa9\xe2\x82\xac"),
                             std::string("quote'\"%_*?[]"), std::string(400, 'x')}) {
    const std::string k = key(suffix);
    ClaimOutcome o = MUST(store().claim(req(k)));
    ASSERT_TRUE(o.acquired()) << k;
    EXPECT_OK(store().complete(done(k, o.token, "ok")));
    std::optional<IdempotencyRecord> rec = MUST(store().get(k));
    ASSERT_TRUE(rec.has_value()) << k;
    EXPECT_EQ(rec->idempotency_key, k);
  }
  // The '%' and '_' above must not act as wildcards in a prefix scan.
  ScanOptions opts;
  opts.prefix = key("quote'\"%_");
  ScanPage page = MUST(store().scan(opts));
  ASSERT_EQ(page.records.size(), 1u);
}

// ---------------------------------------------------------------------------
// Durations: every store refuses the same out-of-range requests, the same way
// (kInvalidArgument, nothing written), instead of overflowing `now + ttl`
// into a record that is born expired. See validate_claim_request(), store.h.

TEST_P(StoreContract, OutOfRangeDurationsAreRefusedAndNothingIsWritten) {
  const std::string k = key("huge");
  for (const milliseconds lease : {milliseconds::max(), kMaxLease + 1ms, 0ms, -1ms}) {
    Result<ClaimOutcome> r = store().claim(req(k, lease, kLongTtl));
    ASSERT_FALSE(r) << "lease " << lease.count() << " ms was accepted";
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().to_string();
  }
  for (const milliseconds ttl : {milliseconds::max(), kMaxTtl + 1ms, 0ms, milliseconds::min()}) {
    Result<ClaimOutcome> r = store().claim(req(k, kLongLease, ttl));
    ASSERT_FALSE(r) << "ttl " << ttl.count() << " ms was accepted";
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().to_string();
  }
  EXPECT_FALSE(MUST(store().get(k)).has_value()) << "a refused claim wrote a record";

  // The async form refuses it too (natively asynchronous stores included).
  std::promise<Result<ClaimOutcome>> async_result;
  store().claim_async(req(k, kLongLease, milliseconds::max()),
                      [&](Result<ClaimOutcome> r) { async_result.set_value(std::move(r)); });
  auto future = async_result.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  Result<ClaimOutcome> async_claim = future.get();
  ASSERT_FALSE(async_claim);
  EXPECT_EQ(async_claim.error().code(), ErrorCode::kInvalidArgument);

  // The owner's writes are checked as well, and leave the record as it was.
  ClaimOutcome out = MUST(store().claim(req(k)));
  EXPECT_ERROR(store().complete(done(k, out.token, "r", milliseconds::max())), ErrorCode::kInvalidArgument);
  EXPECT_ERROR(store().fail(failed(k, out.token, "e", true, milliseconds::max())), ErrorCode::kInvalidArgument);
  EXPECT_ERROR(store().extend(k, out.token, milliseconds::max()), ErrorCode::kInvalidArgument);
  EXPECT_ERROR(store().extend(k, out.token, 0ms), ErrorCode::kInvalidArgument);
  std::optional<IdempotencyRecord> rec = MUST(store().get(k));
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, ProcessingStatus::kProcessing);
  EXPECT_EQ(rec->token, out.token);
  EXPECT_OK(store().complete(done(k, out.token, "r")));
}

TEST_P(StoreContract, DurationsAtTheBoundsKeepTheRecord) {
  const std::string k = key("bounds");
  ClaimOutcome out = MUST(store().claim(req(k, kMaxLease, kMaxTtl)));
  ASSERT_TRUE(out.acquired());
  EXPECT_GT(out.lease_expires_at, now() + kMaxLease - 1h);
  EXPECT_OK(store().extend(k, out.token, kMaxLease));
  EXPECT_OK(store().complete(done(k, out.token, "kept", kMaxTtl)));
  // "At most once" holds: the record is COMPLETED and replayed, not born
  // expired and run again.
  ClaimOutcome replay = MUST(store().claim(req(k)));
  EXPECT_EQ(replay.status, ClaimStatus::kCompleted);
  ASSERT_TRUE(replay.record.has_value());
  EXPECT_EQ(replay.record->result, "kept");
  EXPECT_GT(replay.record->expires_at, now() + kMaxTtl - 1h);
}

TEST_P(StoreContract, ClaimManyWithOneBadRequestWritesNothing) {
  const std::string a = key("a");
  const std::string b = key("b");
  const std::vector<ClaimRequest> batch = {req(a), req(b, kLongLease, milliseconds::max())};
  Result<std::vector<ClaimOutcome>> r = store().claim_many(batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(MUST(store().get(a)).has_value()) << "the valid request of a refused batch was written";
}

// ---------------------------------------------------------------------------
// approximate_record_bytes: one record's cost, or nullopt (the default).

TEST_P(StoreContract, ApproximateRecordBytesLooksAtOneRecord) {
  EXPECT_EQ(MUST(store().approximate_record_bytes(key("absent"))), std::nullopt);
  const std::string k = key("sized");
  ClaimOutcome out = MUST(store().claim(req(k)));
  const std::string result(5000, 'r');
  EXPECT_OK(store().complete(done(k, out.token, result)));
  const std::optional<std::uint64_t> bytes = MUST(store().approximate_record_bytes(k));
  if (bytes) {
    // At least the key and the result, and not the whole store.
    EXPECT_GE(*bytes, k.size() + result.size());
    EXPECT_LT(*bytes, 4 * (k.size() + result.size()) + 4096);
  }
  EXPECT_TRUE(MUST(store().remove(k)));
  EXPECT_EQ(MUST(store().approximate_record_bytes(k)), std::nullopt);
}

// ---------------------------------------------------------------------------
// wait_settled: returns once the original finishes, with the verdict.

TEST_P(StoreContract, WaitSettledReturnsTheVerdictOnceTheOriginalFinishes) {
  const std::string k = key("wait");
  ClaimOutcome out = MUST(store().claim(req(k)));
  // Nothing to wait for: an absent key and a finished record return at once.
  EXPECT_FALSE(MUST(store().wait_settled(key("absent"), 10s)).has_value());
  std::thread original([&] {
    std::this_thread::sleep_for(50ms);
    EXPECT_OK(store().complete(done(k, out.token, "r")));
  });
  const auto start = std::chrono::steady_clock::now();
  std::optional<IdempotencyRecord> rec = MUST(store().wait_settled(k, 20s));
  original.join();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, "r");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  // A timeout returns the record as last seen, still PROCESSING.
  const std::string busy = key("busy");
  MUST(store().claim(req(busy)));
  std::optional<IdempotencyRecord> still = MUST(store().wait_settled(busy, 20ms));
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->status, ProcessingStatus::kProcessing);
}

// ---------------------------------------------------------------------------
// Concurrency: 16 threads claim the same 1,000 keys; each key runs once.

TEST_P(StoreContract, SixteenThreadsEachKeyAcquiredExactlyOnce) {
  constexpr int kThreads = 16;
  constexpr int kKeys = 1000;
  std::vector<std::string> keys;
  keys.reserve(kKeys);
  for (int i = 0; i < kKeys; ++i) keys.push_back(key("race-" + std::to_string(i)));
  std::vector<std::atomic<int>> acquired(kKeys);
  std::atomic<int> errors{0};
  std::atomic<int> unexpected{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      // Every thread walks all keys, starting at a different place, so that
      // threads collide on keys all the time.
      for (int n = 0; n < kKeys; ++n) {
        const auto i = static_cast<std::size_t>((n + t * (kKeys / kThreads)) % kKeys);
        Result<ClaimOutcome> out = store_->claim(req(keys[i]));
        if (!out) {
          errors.fetch_add(1);
          continue;
        }
        if (out->acquired()) {
          acquired[i].fetch_add(1);
          if (!store_->complete(done(keys[i], out->token, "t" + std::to_string(t))).ok()) errors.fetch_add(1);
        } else if (out->status != ClaimStatus::kInProgress && out->status != ClaimStatus::kCompleted) {
          unexpected.fetch_add(1);
        }
      }
    });
  }
  go.store(true);
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(unexpected.load(), 0);
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    if (acquired[static_cast<std::size_t>(i)].load() != 1) {
      if (++wrong <= 5) {
        ADD_FAILURE() << keys[static_cast<std::size_t>(i)] << " acquired "
                      << acquired[static_cast<std::size_t>(i)].load() << " times";
      }
    }
  }
  EXPECT_EQ(wrong, 0) << "keys not acquired exactly once";
  for (int i = 0; i < kKeys; i += 97) {
    std::optional<IdempotencyRecord> rec = MUST(store().get(keys[static_cast<std::size_t>(i)]));
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->status, ProcessingStatus::kCompleted);
    EXPECT_EQ(rec->attempt, 1u);
  }
}

TEST_P(StoreContract, ConcurrentTakeoverHasOneWinner) {
  // Many workers find the same expired lease at once: exactly one takes over.
  const std::string k = key("a");
  ClaimOutcome first = MUST(store().claim(req(k, kShortLease)));
  ASSERT_TRUE(first.acquired());
  std::this_thread::sleep_for(kPastShortLease);
  constexpr int kThreads = 8;
  std::atomic<int> winners{0};
  std::atomic<Token> winner_token{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      Result<ClaimOutcome> out = store_->claim(req(k));
      if (out && out->acquired()) {
        winners.fetch_add(1);
        winner_token.store(out->token);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(winners.load(), 1);
  EXPECT_GT(winner_token.load(), first.token);
}

}  // namespace idem::conformance
