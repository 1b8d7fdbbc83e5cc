// The history checker must accept correct histories and refute doctored
// ones: each test below plants one kind of bug by hand.
#include "chaos/checker.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "chaos/history.h"

namespace idem::chaos {
namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;  // ms
constexpr std::int64_t kLease = 600;             // ms

// Builder writes a history with times in milliseconds after kT0.
class Builder {
 public:
  Builder& at(std::int64_t ms) {
    now_ = ms;
    return *this;
  }
  Builder& add(std::string proc, std::string_view op, std::int64_t key, std::uint64_t token = 0,
               std::string status = "-", std::int64_t aux = 0) {
    Event e;
    e.time_us = (kT0 + now_) * 1000 + seq_++;  // keeps the written order within one millisecond
    e.proc = std::move(proc);
    e.op = std::string(op);
    e.key = key;
    e.token = token;
    e.status = std::move(status);
    e.aux = aux;
    events_.push_back(std::move(e));
    return *this;
  }
  // claim() writes an acquired claim answered 1 ms later, with a lease from then.
  Builder& claim(const std::string& proc, std::int64_t key, std::uint64_t token, const std::string& kind = "new") {
    add(proc, op::kClaimInv, key);
    now_ += 1;
    return add(proc, op::kClaimOk, key, token, kind, kT0 + now_ + kLease);
  }
  Builder& effect(const std::string& proc, std::int64_t key, std::uint64_t token, std::int64_t ms = 10) {
    add(proc, op::kEffectBegin, key, token);
    now_ += ms;
    return add(proc, op::kEffectEnd, key, token);
  }
  Builder& complete(const std::string& proc, std::int64_t key, std::uint64_t token, const std::string& answer = "ok") {
    add(proc, op::kCompleteInv, key, token);
    now_ += 1;
    if (answer == "ok") return add(proc, op::kCompleteOk, key, token);
    if (answer == "none") return *this;  // the process died waiting
    return add(proc, op::kCompleteErr, key, token, answer);
  }
  Builder& final_read(std::int64_t key, const std::string& status, std::uint64_t token, std::int64_t result_token) {
    return add("900.audit", op::kFinal, key, token, status, result_token);
  }
  // One clean life of `key`: claim, effect, complete, audited.
  Builder& clean(const std::string& proc, std::int64_t key, std::uint64_t token) {
    claim(proc, key, token).effect(proc, key, token).complete(proc, key, token);
    return final_read(key, "completed", token, static_cast<std::int64_t>(token));
  }

  Report check(CheckOptions options = {}) {
    std::vector<Event> copy = events_;
    merge(copy);
    return chaos::check(copy, options);
  }

 private:
  std::int64_t now_ = 0;
  std::int64_t seq_ = 0;
  std::vector<Event> events_;
};

std::string why(const Report& r) { return r.summary(); }

TEST(ChaosChecker, AcceptsACleanHistoryWithDuplicateDeliveries) {
  Builder b;
  b.claim("100.0", 1, 5);
  b.add("101.0", op::kClaimInv, 1).add("101.0", op::kClaimOk, 1, 5, "in_progress", kT0 + kLease);
  b.effect("100.0", 1, 5).complete("100.0", 1, 5);
  b.add("101.0", op::kClaimInv, 1).add("101.0", op::kClaimOk, 1, 5, "completed", 5);
  b.final_read(1, "completed", 5, 5);
  b.at(50).clean("101.1", 2, 9);
  const Report r = b.check();
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.keys, 2u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(r.count("claim.completed"), 1u);
}

TEST(ChaosChecker, AttributesADuplicateToAKilledWorker) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5);
  b.add("harness", op::kKill, -1, 0, "-", 100);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6);
  const Report r = b.check();
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.duplicates, 1u);
  EXPECT_EQ(r.duplicate_causes.at("killed"), 1u);
}

TEST(ChaosChecker, AttributesDuplicatesToCrashesFreezesAndStoreFaults) {
  Builder b;
  // Key 1: the worker crashed on purpose after its effect.
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).add("100.0", op::kCrash, 1, 5, "after_effect");
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6);
  // Key 2: the worker froze past its lease and was fenced when it woke up.
  b.at(1000).claim("102.0", 2, 7).add("102.0", op::kEffectBegin, 2, 7);
  b.add("harness", op::kStop, -1, 0, "-", 102);
  b.at(1700).claim("101.0", 2, 8, "takeover").effect("101.0", 2, 8).complete("101.0", 2, 8);
  b.at(2500).add("harness", op::kCont, -1, 0, "-", 102).add("102.0", op::kEffectEnd, 2, 7);
  b.complete("102.0", 2, 7, "lease_lost");
  b.final_read(2, "completed", 8, 8);
  // Key 3: the store went away before the completion could land.
  b.at(3000).claim("103.0", 3, 9).effect("103.0", 3, 9);
  b.add("harness", op::kStoreFault, -1, 0, "kill", 0);
  b.complete("103.0", 3, 9, "unavailable");
  b.at(3700).add("harness", op::kStoreHeal, -1, 0, "restart", 0);
  b.claim("101.0", 3, 10, "takeover").effect("101.0", 3, 10).complete("101.0", 3, 10);
  b.final_read(3, "completed", 10, 10);
  const Report r = b.check();
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.duplicates, 3u);
  EXPECT_EQ(r.duplicate_causes.at("crashed:after_effect"), 1u);
  EXPECT_EQ(r.duplicate_causes.at("frozen"), 1u);
  EXPECT_EQ(r.duplicate_causes.at("store-fault"), 1u);
  EXPECT_EQ(r.count("fenced"), 1u);
}

TEST(ChaosChecker, ACrashExplainsOnlyWhatItsProcessWasDoing) {
  // Tokens are per key: token 5 of key 2 is not token 5 of key 1.
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).complete("100.0", 1, 5);
  b.claim("100.1", 2, 5).effect("100.1", 2, 5);
  b.claim("100.2", 3, 5).add("100.2", op::kCrash, 3, 5, "after_claim");
  b.final_read(1, "completed", 5, 5).final_read(3, "completed", 6, 6);
  b.at(700).claim("101.0", 1, 6, "retry").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.claim("101.0", 2, 6, "takeover").effect("101.0", 2, 6).complete("101.0", 2, 6);
  b.final_read(2, "completed", 6, 6);
  const Report r = b.check();
  EXPECT_TRUE(r.has("unattributed-duplicate")) << why(r);             // key 1 completed: no crash excuses it
  EXPECT_EQ(r.duplicate_causes.at("crashed:sibling"), 1u) << why(r);  // key 2 died with its process
  EXPECT_EQ(r.duplicate_causes.count("crashed:after_claim"), 0u) << why(r);
}

TEST(ChaosChecker, AnIndeterminateCompletionMayHaveLanded) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).complete("100.0", 1, 5, "none");
  b.add("harness", op::kKill, -1, 0, "-", 100);
  b.at(800).add("101.0", op::kClaimInv, 1).add("101.0", op::kClaimOk, 1, 5, "completed", 5);
  b.final_read(1, "completed", 5, 5);
  const Report r = b.check();
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.count("indeterminate"), 1u);
}

TEST(ChaosChecker, RefutesACompletionUnderAStaleToken) {
  // The planted fencing bug: the frozen worker's completion is accepted
  // after another worker took the key over.
  Builder b;
  b.claim("100.0", 1, 5).add("100.0", op::kEffectBegin, 1, 5);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6);
  b.at(900).add("100.0", op::kEffectEnd, 1, 5).complete("100.0", 1, 5);
  b.final_read(1, "completed", 6, 5);
  const Report r = b.check();
  EXPECT_TRUE(r.has("stale-write")) << why(r);
}

TEST(ChaosChecker, RefutesAWriteUnderATokenNoClaimHandedOut) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).complete("100.0", 1, 4);
  b.final_read(1, "completed", 5, 4);
  EXPECT_TRUE(b.check().has("stale-write"));
}

TEST(ChaosChecker, RefutesAnExtendAfterATakeover) {
  Builder b;
  b.claim("100.0", 1, 5).add("100.0", op::kEffectBegin, 1, 5);
  b.at(700).claim("101.0", 1, 6, "takeover");
  b.at(710).add("100.0", op::kExtendInv, 1, 5).add("100.0", op::kExtendOk, 1, 5, "-", kT0 + 1310);
  b.at(720).effect("101.0", 1, 6).complete("101.0", 1, 6).final_read(1, "completed", 6, 6);
  EXPECT_TRUE(b.check().has("stale-write"));
}

TEST(ChaosChecker, RefutesTokensThatDoNotIncrease) {
  Builder b;
  b.claim("100.0", 1, 7).effect("100.0", 1, 7).add("harness", op::kKill, -1, 0, "-", 100);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6);
  EXPECT_TRUE(b.check().has("token-order"));
}

TEST(ChaosChecker, RefutesATokenHandedOutTwice) {
  Builder b;
  b.claim("100.0", 1, 5).add("harness", op::kKill, -1, 0, "-", 100);
  b.at(700).claim("101.0", 1, 5, "takeover").effect("101.0", 1, 5).complete("101.0", 1, 5);
  b.final_read(1, "completed", 5, 5);
  EXPECT_TRUE(b.check().has("token-order"));
}

TEST(ChaosChecker, RefutesAClaimThatAcquiresACompletedKey) {
  Builder b;
  b.clean("100.0", 1, 5);
  b.at(100).claim("101.0", 1, 6, "retry").effect("101.0", 1, 6).complete("101.0", 1, 6);
  const Report r = b.check();
  EXPECT_TRUE(r.has("completed-overwritten")) << why(r);
  EXPECT_TRUE(r.has("unattributed-duplicate")) << why(r);
}

TEST(ChaosChecker, RefutesAResultThatChangesUnderTheReaders) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).complete("100.0", 1, 5);
  b.add("101.0", op::kClaimInv, 1).add("101.0", op::kClaimOk, 1, 5, "completed", 5);
  b.final_read(1, "completed", 5, 9);
  EXPECT_TRUE(b.check().has("completed-overwritten"));
}

TEST(ChaosChecker, RefutesAKeyLeftUnsettled) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).add("harness", op::kKill, -1, 0, "-", 100);
  b.final_read(1, "processing", 5, 0);
  b.claim("101.0", 2, 6);  // never audited at all
  const Report r = b.check();
  EXPECT_TRUE(r.has("lost-event")) << why(r);
  EXPECT_EQ(r.violation_counts.at("lost-event"), 2u);
}

TEST(ChaosChecker, RefutesARetryableFailureAsTheEnd) {
  Builder b;
  b.claim("100.0", 1, 5).add("100.0", op::kFailInv, 1, 5, "retryable").add("100.0", op::kFailOk, 1, 5, "retryable");
  b.final_read(1, "failed", 5, 0);
  EXPECT_TRUE(b.check().has("lost-event"));
}

TEST(ChaosChecker, RefutesTwoEffectsUnderLiveLeases) {
  // A broken claim that takes over a live lease.
  Builder b;
  b.claim("100.0", 1, 5).add("100.0", op::kEffectBegin, 1, 5);
  b.at(100).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.at(200).add("100.0", op::kEffectEnd, 1, 5).complete("100.0", 1, 5, "lease_lost");
  b.final_read(1, "completed", 6, 6);
  const Report r = b.check();
  EXPECT_TRUE(r.has("concurrent-effects")) << why(r);
}

TEST(ChaosChecker, RefutesADuplicateNoFaultExplains) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5);  // then the worker simply walks away
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6);
  EXPECT_TRUE(b.check().has("unattributed-duplicate"));
}

TEST(ChaosChecker, AClaimThatWaitedPastItsLeaseExplainsADuplicate) {
  // The claim waited 700 ms for the store (a lock) and came back with a lease
  // that had already run out: the next claim may take over at once.
  Builder b;
  b.add("100.0", op::kClaimInv, 1);
  b.at(700).add("100.0", op::kClaimOk, 1, 5, "new", kT0 + 600).effect("100.0", 1, 5);
  b.claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.complete("100.0", 1, 5, "lease_lost").final_read(1, "completed", 6, 6);
  const Report r = b.check();
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.count("acquired.expired_on_arrival"), 1u);
  EXPECT_EQ(r.duplicate_causes.at("lease-expired-on-arrival"), 1u) << why(r);
}

TEST(ChaosChecker, AKillAfterTheTakeoverExplainsNothing) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6);
  b.at(5000).add("harness", op::kKill, -1, 0, "-", 100);
  EXPECT_TRUE(b.check().has("unattributed-duplicate"));
}

// A transactional store: the killed worker's attempt rolled back, so the
// only committed effect is the one that completed.
TEST(ChaosChecker, ATransactionalStoreRollsBackAKilledAttempt) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).add("harness", op::kKill, -1, 0, "-", 100);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6).add("900.audit", op::kRow, 1, 6);
  const Report r = b.check({.duplicates_allowed = false});
  EXPECT_TRUE(r.ok()) << why(r);
  EXPECT_EQ(r.committed, 1u);
  EXPECT_EQ(r.duplicate_causes.at("killed"), 1u) << why(r);
}

TEST(ChaosChecker, ATransactionalStoreAllowsNoSecondCommittedEffect) {
  Builder b;
  b.claim("100.0", 1, 5).effect("100.0", 1, 5).add("harness", op::kKill, -1, 0, "-", 100);
  b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
  b.final_read(1, "completed", 6, 6).add("900.audit", op::kRow, 1, 5).add("900.audit", op::kRow, 1, 6);
  EXPECT_TRUE(b.check().ok());  // without the row check the kill explains it
  const Report r = b.check({.duplicates_allowed = false});
  EXPECT_TRUE(r.has("duplicate-effect")) << why(r);
  EXPECT_EQ(r.committed_duplicates, 1u);
}

TEST(ChaosChecker, ATransactionalStoreCommitsTheEffectWithTheRecord) {
  {
    Builder b;  // COMPLETED, no row
    b.claim("100.0", 1, 5).effect("100.0", 1, 5).complete("100.0", 1, 5).final_read(1, "completed", 5, 5);
    EXPECT_TRUE(b.check({.duplicates_allowed = false}).has("torn-commit"));
  }
  {
    Builder b;  // the row of another token than the stored result's
    b.claim("100.0", 1, 5).effect("100.0", 1, 5).add("harness", op::kKill, -1, 0, "-", 100);
    b.at(700).claim("101.0", 1, 6, "takeover").effect("101.0", 1, 6).complete("101.0", 1, 6);
    b.final_read(1, "completed", 6, 6).add("900.audit", op::kRow, 1, 5);
    EXPECT_TRUE(b.check({.duplicates_allowed = false}).has("torn-commit"));
  }
  {
    Builder b;  // failed terminally, yet an effect committed
    b.claim("100.0", 1, 5).add("100.0", op::kFailInv, 1, 5, "terminal").add("100.0", op::kFailOk, 1, 5, "terminal");
    b.final_read(1, "failed_terminal", 5, 0).add("900.audit", op::kRow, 1, 5);
    EXPECT_TRUE(b.check({.duplicates_allowed = false}).has("torn-commit"));
  }
}

TEST(ChaosHistory, LinesRoundTrip) {
  Event e;
  e.time_us = 1'700'000'000'123'456;
  e.proc = "4242.3";
  e.op = std::string(op::kClaimOk);
  e.key = 17;
  e.token = 99;
  e.status = "takeover";
  e.aux = 1'700'000'000'800;
  auto back = parse_event(format_event(e));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->time_us, e.time_us);
  EXPECT_EQ(back->proc, e.proc);
  EXPECT_EQ(back->pid(), 4242);
  EXPECT_EQ(back->op, e.op);
  EXPECT_EQ(back->key, 17);
  EXPECT_EQ(back->token, 99u);
  EXPECT_EQ(back->status, "takeover");
  EXPECT_EQ(back->aux, e.aux);
  EXPECT_FALSE(parse_event("12 p claim.inv 1 2 -").has_value());
  EXPECT_FALSE(parse_event("x p claim.inv 1 2 - 0").has_value());
}

TEST(ChaosHistory, MergesFilesAndToleratesACutLastLine) {
  char pattern[] = "/tmp/idem-chaos-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  {
    std::string error;
    auto w = HistoryWriter::open(dir + "/a.hist", &error);
    ASSERT_TRUE(w.has_value()) << error;
    w->write({.time_us = 30, .proc = "1.0", .op = "claim.inv", .key = 1});
    w->write({.time_us = 10, .proc = "1.0", .op = "claim.err", .key = 1, .status = "timeout"});
  }
  std::ofstream(dir + "/b.hist") << "20 2.0 claim.inv 2 0 - 0\n25 2.0 claim.o";
  std::ofstream(dir + "/c.hist") << "garbage\n5 3.0 claim.inv 3 0 - 0\n";
  const History h = read_history(dir);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(h.events.size(), 4u);
  EXPECT_EQ(h.events[0].time_us, 5);
  EXPECT_EQ(h.events[1].time_us, 10);
  EXPECT_EQ(h.events[3].time_us, 30);
  EXPECT_EQ(h.events[3].line, 4u);
  ASSERT_EQ(h.problems.size(), 1u);  // the garbage line, not b's cut last line
  EXPECT_NE(h.problems[0].find("c.hist:1"), std::string::npos) << h.problems[0];
}

}  // namespace
}  // namespace idem::chaos
