// Migration from the original Python module on Redis (issue 15): its records
// read in place under the same prefix, garbage refused, the opt-out, the
// records' cost in both layouts, `idem get/list` marking legacy records, and
// a mixed fleet: a Python consumer following the original logic
// (redis_mixed_fleet.py) and Idem with layout=json on the same events.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using namespace std::chrono_literals;
using idem::ClaimStatus;
using idem::ProcessingStatus;
using idem::test::RedisServer;

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new idem::test::StandaloneRedis);
RedisServer* redis() { return idem::test::StandaloneRedis::server(); }

std::shared_ptr<idem::Store> open_store(const std::string& query = "") {
  auto store = idem::RedisStore::open(redis()->url() + "/0" + query);
  EXPECT_TRUE(store.ok()) << store.error().to_string();
  return store.ok() ? *store : nullptr;
}

idem::Timestamp wall_now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

// iso() writes `t` the way Python's datetime.isoformat() does, in the zone
// `offset_min` minutes east of UTC (nullopt: a naive datetime), with
// microseconds.
std::string iso(idem::Timestamp t, std::optional<int> offset_min, bool zulu = false) {
  const auto local = t + std::chrono::minutes(offset_min.value_or(0));
  const auto day = std::chrono::floor<std::chrono::days>(local);
  const std::chrono::year_month_day ymd(day);
  const long long ms = (local - day).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%03lld456", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), ms / 3'600'000, ms / 60'000 % 60,
                ms / 1000 % 60, ms % 1000);
  std::string out(buf);
  if (zulu) return out + "Z";
  if (!offset_min) return out;
  const int o = std::abs(*offset_min);
  std::snprintf(buf, sizeof buf, "%c%02d:%02d", *offset_min < 0 ? '-' : '+', o / 60, o % 60);
  return out + buf;
}

// legacy_json() is a record exactly as the original module's model wrote it
// (json.dumps of the model: ", " and ": " separators, null for None).
std::string legacy_json(const std::string& id, const std::string& status, const std::string& result,
                        const std::string& error, const std::string& first, const std::string& completed) {
  return "{\"idempotency_key\": \"" + id + "\", \"event_id\": \"" + id +
         "\", \"event_type\": \"payment.created\", \"status\": \"" + status + "\", \"result\": " + result +
         ", \"error\": " + error + ", \"first_seen_at\": \"" + first + "\", \"completed_at\": " + completed + "}";
}

// put_legacy() writes it with the original's commands: SET NX EX for
// PROCESSING, SET EX afterwards.
void put_legacy(const std::string& key, const std::string& json, bool processing) {
  std::vector<std::string> cmd{"SET", key, json, "EX", "86400"};
  if (processing) cmd.emplace_back("NX");
  ASSERT_EQ(redis()->command(cmd).value_or("?"), "OK");
}

idem::ClaimRequest req(const std::string& key, const std::string& event_id) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = event_id;
  r.event_type = "payment.created";
  r.fingerprint = "fp";
  return r;
}

std::string raw(const std::string& key) { return redis()->command({"GET", key}).value_or("?"); }

class LegacyRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    if (redis() == nullptr) GTEST_SKIP();
    redis()->command({"FLUSHALL"});
  }
  const std::string prefix_ = "idempotency:events:";
};

TEST_F(LegacyRecords, CompletedIsADuplicateReplayingTheResultAsCompactJson) {
  auto store = open_store();
  const auto t = wall_now() - 3s;
  const std::string k = prefix_ + "evt-c1";
  // An offset east of UTC, microseconds, a result with spaces and nesting.
  put_legacy(k,
             legacy_json("evt-c1", "COMPLETED", "{\"charge\": \"c_1\", \"amount\": 12.5, \"tags\": [1, 2]}", "null",
                         iso(t, 330), "\"" + iso(t + 2s, 330) + "\""),
             false);
  idem::ClaimOutcome o = store->claim(req(k, "evt-c1")).value();
  ASSERT_EQ(o.status, ClaimStatus::kCompleted);
  ASSERT_TRUE(o.record);
  EXPECT_EQ(o.record->result, std::optional<std::string>("{\"charge\":\"c_1\",\"amount\":12.5,\"tags\":[1,2]}"));
  EXPECT_EQ(o.record->token, 0u) << "a legacy record reads back with token 0";
  EXPECT_EQ(o.record->first_seen_at, t);
  EXPECT_EQ(o.record->completed_at, t + 2s);

  // Without a result (None): completed, nothing to replay.
  const std::string k2 = prefix_ + "evt-c2";
  put_legacy(k2, legacy_json("evt-c2", "COMPLETED", "null", "null", iso(t, -300), "\"" + iso(t, -300) + "\""), false);
  o = store->claim(req(k2, "evt-c2")).value();
  ASSERT_EQ(o.status, ClaimStatus::kCompleted);
  EXPECT_FALSE(o.record->result.has_value());
  EXPECT_EQ(o.record->first_seen_at, t) << "-05:00 offset";
  // Nothing was written over either.
  EXPECT_NE(raw(k).find("\"charge\": \"c_1\""), std::string::npos);
}

TEST_F(LegacyRecords, FailedIsTakenOverWithATokenAboveAnyIdemToken) {
  auto store = open_store();
  const std::string k = prefix_ + "evt-f1";
  // An Idem life of the key before the original module's record.
  idem::ClaimOutcome before = store->claim(req(k, "evt-f1")).value();
  ASSERT_TRUE(before.acquired());
  ASSERT_TRUE(store->remove(k).value());
  const auto t = wall_now();
  put_legacy(
      k, legacy_json("evt-f1", "FAILED", "null", "\"card declined\"", iso(t, std::nullopt), "\"" + iso(t, 0) + "\""),
      false);
  auto rec = store->get(k).value();
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->status, ProcessingStatus::kFailed);
  EXPECT_EQ(rec->error, std::optional<std::string>("card declined"));
  EXPECT_TRUE(rec->retryable);
  EXPECT_EQ(rec->first_seen_at, t) << "a naive time is UTC";

  idem::ClaimOutcome o = store->claim(req(k, "evt-f1")).value();
  ASSERT_TRUE(o.acquired());
  EXPECT_EQ(o.acquire_kind, idem::AcquireKind::kRetry);
  EXPECT_EQ(o.attempt, 2u);
  EXPECT_GT(o.token, before.token);
  const long long server_us = std::stoll(redis()->command({"TIME"}).value().substr(0, 10)) * 1'000'000;
  EXPECT_GE(static_cast<long long>(o.token), server_us - 2'000'000) << "the token comes from the server's clock";
  // The key stays JSON that the original module reads, now with a token.
  const std::string v = raw(k);
  EXPECT_EQ(v.front(), '{');
  EXPECT_NE(v.find("\"status\":\"PROCESSING\""), std::string::npos) << v;
  EXPECT_NE(v.find("\"token\":\"" + std::to_string(o.token) + "\""), std::string::npos) << v;
  // A second claim sees it in progress; the owner completes it.
  EXPECT_EQ(store->claim(req(k, "evt-f1")).value().status, ClaimStatus::kInProgress);
  ASSERT_TRUE(store->complete(idem::CompleteRequest{k, o.token, "{\"ok\": true}"}).ok());
  rec = store->get(k).value();
  EXPECT_EQ(rec->status, ProcessingStatus::kCompleted);
  EXPECT_EQ(rec->result, std::optional<std::string>("{\"ok\": true}"));
  EXPECT_NE(raw(k).find("\"result\":{\"ok\": true}"), std::string::npos) << raw(k);
}

TEST_F(LegacyRecords, ProcessingIsInProgressUntilTheLegacyLeaseThenTakenOver) {
  auto store = open_store();
  auto short_lease = open_store("?legacy_lease_ms=1000");
  const auto t = wall_now() - 2s;
  const std::string k = prefix_ + "evt-p1";
  put_legacy(k, legacy_json("evt-p1", "PROCESSING", "null", "null", iso(t, std::nullopt, true), "null"), true);
  // Default lease: 5 minutes after first_seen_at.
  idem::ClaimOutcome o = store->claim(req(k, "evt-p1")).value();
  ASSERT_EQ(o.status, ClaimStatus::kInProgress);
  EXPECT_EQ(o.record->lease_expires_at, t + 5min);
  EXPECT_EQ(store->get(k).value()->lease_expires_at, t + 5min);
  // A 1 s legacy lease has run out 2 s after first_seen_at: taken over.
  o = short_lease->claim(req(k, "evt-p1")).value();
  ASSERT_TRUE(o.acquired());
  EXPECT_EQ(o.acquire_kind, idem::AcquireKind::kTakeover);
  EXPECT_TRUE(short_lease->complete(idem::CompleteRequest{k, o.token, "done"}).ok());
  EXPECT_EQ(store->get(k).value()->result, std::optional<std::string>("done"));
  // The same through claim_many, and 10 minutes old under the default lease.
  const std::string k2 = prefix_ + "evt-p2";
  put_legacy(k2, legacy_json("evt-p2", "PROCESSING", "null", "null", iso(wall_now() - 10min, 60), "null"), true);
  std::vector<idem::ClaimRequest> batch{req(k2, "evt-p2")};
  auto many = store->claim_many(batch).value();
  ASSERT_EQ(many.size(), 1u);
  EXPECT_TRUE(many[0].acquired());
  EXPECT_EQ(many[0].acquire_kind, idem::AcquireKind::kTakeover);
}

// A duplicate of a legacy record costs the one plain command of any claim.
TEST_F(LegacyRecords, OneCommandPerDuplicateClaim) {
  auto store = open_store();
  const auto t = wall_now();
  const std::string k = prefix_ + "evt-r1";
  put_legacy(k, legacy_json("evt-r1", "COMPLETED", "{}", "null", iso(t, 0), "\"" + iso(t, 0) + "\""), false);
  ASSERT_EQ(store->claim(req(k, "evt-warm")).value().status, ClaimStatus::kCompleted);  // connects
  redis()->command({"CONFIG", "RESETSTAT"});
  for (int i = 0; i < 5; ++i) ASSERT_EQ(store->claim(req(k, "evt-r1")).value().status, ClaimStatus::kCompleted);
  EXPECT_EQ(redis()->stat_calls("set"), 5u);
  EXPECT_EQ(redis()->stat_calls("evalsha"), 0u);
  EXPECT_EQ(redis()->stat_calls("get"), 0u);
}

TEST_F(LegacyRecords, GarbageIsATypedErrorNamingTheKeyAndNeverOverwritten) {
  auto store = open_store();
  const auto t = iso(wall_now(), 0);
  const std::vector<std::string> garbage{
      "hello",
      "{\"status\": \"COMPLETED\", \"first_seen_at\": \"" + t,  // truncated
      "{}",
      "[1, 2]",
      "{\"status\": \"DONE\", \"first_seen_at\": \"" + t + "\"}",
      "{\"status\": \"COMPLETED\", \"first_seen_at\": \"yesterday\"}",
      "{\"status\": \"COMPLETED\", \"first_seen_at\": \"" + t + "\", \"result\": {\"a\": }}",
      "{\"status\": \"PROCESSING\", \"first_seen_at\": \"" + t + "\", \"token\": \"x\"}",
  };
  int i = 0;
  for (const std::string& g : garbage) {
    const std::string k = prefix_ + "junk-" + std::to_string(i++);
    redis()->command({"SET", k, g});
    for (auto* s : {store.get()}) {
      auto c = s->claim(req(k, "junk"));
      ASSERT_FALSE(c.ok()) << g;
      EXPECT_EQ(c.error().code(), idem::ErrorCode::kCorrupt) << g;
      EXPECT_NE(c.error().message().find(k), std::string::npos) << c.error().to_string();
      auto r = s->get(k);
      ASSERT_FALSE(r.ok()) << g;
      EXPECT_EQ(r.error().code(), idem::ErrorCode::kCorrupt) << g;
    }
    EXPECT_EQ(raw(k), g) << "never overwritten";
  }
}

TEST_F(LegacyRecords, OptOutTreatsThemAsForeignValues) {
  auto store = open_store("?legacy=0");
  const auto t = wall_now();
  const std::string k = prefix_ + "evt-o1";
  const std::string v = legacy_json("evt-o1", "FAILED", "null", "\"x\"", iso(t, 0), "\"" + iso(t, 0) + "\"");
  put_legacy(k, v, false);
  auto c = store->claim(req(k, "evt-o1"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), idem::ErrorCode::kCorrupt);
  EXPECT_NE(c.error().message().find("legacy=0"), std::string::npos) << c.error().to_string();
  EXPECT_EQ(raw(k), v);
  // Idem's own records, of either layout, are still read.
  auto json_store = open_store("?layout=json&legacy=0");
  const std::string k2 = prefix_ + "evt-o2";
  idem::ClaimOutcome o = json_store->claim(req(k2, "evt-o2")).value();
  ASSERT_TRUE(json_store->complete(idem::CompleteRequest{k2, o.token, "r"}).ok());
  EXPECT_EQ(store->claim(req(k2, "evt-o2")).value().status, ClaimStatus::kCompleted);
}

TEST_F(LegacyRecords, ListStatsAndDeleteSeeThem) {
  auto store = open_store();
  const auto t = wall_now() - 1s;
  put_legacy(prefix_ + "l-1", legacy_json("l-1", "COMPLETED", "{}", "null", iso(t, 0), "\"" + iso(t, 0) + "\""), false);
  put_legacy(prefix_ + "l-2", legacy_json("l-2", "FAILED", "null", "\"e\"", iso(t, 0), "\"" + iso(t, 0) + "\""), false);
  put_legacy(prefix_ + "l-3", legacy_json("l-3", "PROCESSING", "null", "null", iso(t, 0), "null"), true);
  idem::ClaimOutcome own = store->claim(req(prefix_ + "own", "own")).value();
  ASSERT_TRUE(own.acquired());
  idem::ScanOptions opts;
  opts.prefix = prefix_;
  auto page = store->scan(opts).value();
  ASSERT_EQ(page.records.size(), 4u);
  int legacy = 0;
  for (const auto& r : page.records) {
    if (r.token == 0) ++legacy;
    if (r.token == 0) {
      EXPECT_NEAR(static_cast<double>((r.expires_at - wall_now()).count()), 86'400'000.0, 5'000.0)
          << "the key's TTL (PEXPIRETIME)";
    }
  }
  EXPECT_EQ(legacy, 3);
  auto stats = store->stats().value();
  EXPECT_EQ(stats.processing, 2u);
  EXPECT_EQ(stats.completed, 1u);
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_TRUE(store->remove(prefix_ + "l-1").value());
  EXPECT_EQ(raw(prefix_ + "l-1"), "(nil)");
  EXPECT_FALSE(store->get(prefix_ + "l-1").value().has_value());
}

#ifdef IDEM_CLI_PATH
TEST_F(LegacyRecords, IdemGetAndListMarkThem) {
  const auto t = wall_now();
  put_legacy(prefix_ + "cli-1",
             legacy_json("cli-1", "COMPLETED", "{\"a\": 1}", "null", iso(t, 0), "\"" + iso(t, 0) + "\""), false);
  const std::string url = redis()->url() + "/0";
  std::string out;
  ASSERT_EQ(idem::test::run_command({IDEM_CLI_PATH, "get", prefix_ + "cli-1", "--store", url}, &out), 0) << out;
  EXPECT_NE(out.find("legacy: written by the original Python module"), std::string::npos) << out;
  EXPECT_NE(out.find("{\"a\":1}"), std::string::npos) << out;
  ASSERT_EQ(idem::test::run_command({IDEM_CLI_PATH, "get", prefix_ + "cli-1", "--store", url, "--json"}, &out), 0);
  EXPECT_NE(out.find("\"legacy\":true"), std::string::npos) << out;
  ASSERT_EQ(idem::test::run_command({IDEM_CLI_PATH, "list", "--store", url}, &out), 0) << out;
  EXPECT_NE(out.find(prefix_ + "cli-1  (legacy)"), std::string::npos) << out;
}
#endif

// The cost of a completed record in each layout: a 36-character event id
// under the default prefix, a 30-byte result (the figures of docs/redis.md),
// without a fingerprint and with one (SHA-256 in hex, as the checker writes).
TEST_F(LegacyRecords, RecordSizeOfEachLayout) {
  const std::string id = "3f2b8c1e-7d4a-4e9b-9a1c-5d6e7f8a9b0c";  // 36 characters
  const std::string k = prefix_ + id;
  const std::string result = R"({"status":"ok","charge":"c_42)";  // 30 bytes
  const std::string fingerprint(64, 'f');
  std::map<std::string, long long> bytes;
  for (const std::string layout : {"packed", "json"}) {
    auto store = open_store("?layout=" + layout);
    // As CompletedRecordIsAtMost200Bytes (no type, no fingerprint), then with
    // a type and a fingerprint (a SHA-256 in hex, as the checker writes it).
    for (const bool full : {false, true}) {
      redis()->command({"FLUSHALL"});
      idem::ClaimRequest r = req(k, id);
      r.event_type = full ? "payment.created" : "";
      r.fingerprint = full ? std::string_view(fingerprint) : std::string_view();
      idem::ClaimOutcome o = store->claim(r).value();
      ASSERT_TRUE(store->complete(idem::CompleteRequest{k, o.token, result}).ok());
      const std::string name = layout + (full ? "+type+fingerprint" : "");
      bytes[name] = std::stoll(redis()->command({"MEMORY", "USAGE", k, "SAMPLES", "0"}).value());
      std::cout << "[ INFO     ] " << name << ": MEMORY USAGE " << bytes[name] << " bytes, value " << raw(k).size()
                << " bytes\n";
    }
  }
  EXPECT_LE(bytes["packed"], 200);
  EXPECT_LE(bytes["json"], 640);  // 616 measured: ~3x the packed record
}

// ---------------------------------------------------------------------------
// The mixed fleet: the original module's logic in Python and Idem with
// layout=json, on the same 2,000 events with duplicates, at the same time.

constexpr int kEvents = 2000;

TEST(MixedFleet, PythonAndIdemRunEveryEventOnceBetweenThem) {
  if (redis() == nullptr) GTEST_SKIP();
  std::string probe;
  if (idem::test::run_command({"/usr/bin/python3", "-c", "import redis"}, &probe) != 0) {
    IDEM_SKIP_OR_FAIL("/usr/bin/python3 with python3-redis is needed: " + probe);
  }
  redis()->command({"FLUSHALL"});
  const std::string port = std::to_string(redis()->port());
  std::string python_out;
  int python_status = -1;
  std::thread python([&] {
    python_status = idem::test::run_command(
        {"/usr/bin/python3", IDEM_MIXED_FLEET_SCRIPT, port, "7", std::to_string(kEvents), "3"}, &python_out, 120s);
  });

  auto store = open_store("?layout=json");
  ASSERT_TRUE(store);
  // Start together: the Python side marks its start.
  for (int i = 0; i < 500 && redis()->command({"GET", "python:started"}).value_or("") != "1"; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  std::mt19937 rng(11);
  std::deque<int> queue;
  for (int i = 0; i < kEvents; ++i) {
    for (int c = 1 + static_cast<int>(rng() % 3); c > 0; --c) queue.push_back(i);
  }
  std::shuffle(queue.begin(), queue.end(), rng);
  std::mutex mutex;
  std::atomic<int> ran{0};
  std::atomic<int> duplicates{0};
  std::atomic<int> requeued{0};
  std::vector<std::string> errors;
  auto worker = [&] {
    for (;;) {
      int i = 0;
      {
        std::lock_guard lock(mutex);
        if (queue.empty()) return;
        i = queue.front();
        queue.pop_front();
      }
      char id[16];
      std::snprintf(id, sizeof id, "evt-%04d", i);
      const std::string key = std::string("idempotency:events:") + id;
      idem::ClaimRequest r;
      r.key = key;
      r.event_id = id;
      r.event_type = "payment";
      r.fingerprint = "fp";
      auto o = store->claim(r);
      std::string failure;
      if (!o) {
        failure = o.error().to_string();
      } else if (o->acquired()) {
        redis()->command({"INCR", std::string("runs:") + id});
        std::this_thread::sleep_for(1ms);  // the handler's work: the other side meets it in progress
        // Objects are stored as they are, anything else wrapped: the Python
        // side must read both.
        const std::string result = i % 10 == 0 ? "plain text result" : "{\"charged\": \"" + std::string(id) + "\"}";
        if (auto st = store->complete(idem::CompleteRequest{key, o->token, result}); !st) {
          failure = st.error().to_string();
        }
        ++ran;
      } else if (o->status == ClaimStatus::kCompleted) {
        ++duplicates;
      } else if (o->status == ClaimStatus::kInProgress) {
        // The broker would redeliver it later (nak with a delay).
        ++requeued;
        std::this_thread::sleep_for(1ms);
        std::lock_guard lock(mutex);
        queue.push_back(i);
      } else {
        failure = std::string(id) + ": " + std::string(idem::to_string(o->status));
      }
      if (!failure.empty()) {
        std::lock_guard lock(mutex);
        errors.push_back(failure);
      }
    }
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  python.join();
  std::cout << python_out << "idem: " << ran << " processed, " << duplicates << " duplicates, " << requeued
            << " redelivered while in progress\n";
  ASSERT_EQ(python_status, 0) << python_out;
  EXPECT_TRUE(errors.empty()) << errors.size() << " errors, first: " << errors.front();
  EXPECT_GT(ran.load(), 0);
  EXPECT_LT(ran.load(), kEvents * 9 / 10) << "python ran under a tenth: hardly a mixed fleet";

  // Every event's handler ran once, on one side or the other.
  int wrong = 0;
  for (int i = 0; i < kEvents; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "evt-%04d", i);
    const std::string runs = redis()->command({"GET", std::string("runs:") + id}).value_or("?");
    if (runs != "1" && ++wrong <= 5) ADD_FAILURE() << id << " ran " << runs << " times";
  }
  EXPECT_EQ(wrong, 0);
  // And each side reads every record as it stands at the end.
  std::string verify;
  EXPECT_EQ(idem::test::run_command(
                {"/usr/bin/python3", IDEM_MIXED_FLEET_SCRIPT, port, "verify", std::to_string(kEvents)}, &verify, 60s),
            0)
      << verify;
  idem::ScanOptions opts;
  opts.limit = kEvents * 2;
  opts.prefix = "idempotency:events:";
  auto page = store->scan(opts).value();
  EXPECT_EQ(page.records.size(), static_cast<std::size_t>(kEvents));
  for (const auto& rec : page.records) EXPECT_EQ(rec.status, ProcessingStatus::kCompleted) << rec.idempotency_key;
}

}  // namespace
