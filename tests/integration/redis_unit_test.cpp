// Unit tests of the Redis store's pure parts (no server): the packed record
// codec (both formats), JSON records (the original module's and layout=json),
// the server clock estimate and the bound it gives the
// tokens, the process token sequence, and the claim cache.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "stores/redis/claim_cache.h"
#include "stores/redis/json_layout.h"
#include "stores/redis/record_codec.h"
#include "stores/redis/server_clock.h"

namespace {

namespace rd = idem::redis_detail;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using Time = rd::ServerClock::Time;

idem::Timestamp ts(long long ms) { return idem::Timestamp(milliseconds(ms)); }

TEST(RedisRecordCodec, NewClaimDecodesToWhatWasAsked) {
  idem::ClaimRequest r;
  r.key = "idempotency:events:evt-42";
  r.event_id = "evt-42";
  r.event_type = "order.created";
  r.fingerprint = "fp";
  r.lease = milliseconds(30'000);
  r.ttl = milliseconds(600'000);
  const idem::Token token = 1'764'316'609'123'456;
  const rd::NewClaim claim = rd::new_claim_record(r, token);
  EXPECT_EQ(claim.value, "P,1764316609123456,1,0,1764316639123,,E,600000;6,13,2,,,,;order.createdfp");
  EXPECT_EQ(claim.expire_at_ms, 1'764'316'609'123 + 600'000);
  auto d = rd::decode_record(r.key, claim.value, std::nullopt);
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_TRUE(d->expiry_known);
  EXPECT_FALSE(d->watched);
  const idem::IdempotencyRecord& rec = d->record;
  EXPECT_EQ(rec.status, idem::ProcessingStatus::kProcessing);
  EXPECT_EQ(rec.token, token);
  EXPECT_EQ(rec.attempt, 1u);
  EXPECT_EQ(rec.event_id, "evt-42");  // from the key (mode E)
  EXPECT_EQ(rec.event_type, "order.created");
  EXPECT_EQ(rec.fingerprint, "fp");
  EXPECT_EQ(rec.first_seen_at, ts(1'764'316'609'123));
  EXPECT_EQ(rec.lease_expires_at, claim.lease_expires_at);
  EXPECT_EQ(rec.expires_at, ts(claim.expire_at_ms));
  EXPECT_FALSE(rec.result.has_value());
}

TEST(RedisRecordCodec, LeaseLongerThanTtlKeepsTheRecordAlive) {
  idem::ClaimRequest r;
  r.key = "k";
  r.event_id = "e";
  r.lease = milliseconds(5'000);
  r.ttl = milliseconds(100);
  const rd::NewClaim claim = rd::new_claim_record(r, 2'000'000'000);
  EXPECT_EQ(claim.expire_at_ms, 2'000'000 + 5'000);
  EXPECT_EQ(claim.lease_expires_at, ts(2'000'000 + 5'000));
}

TEST(RedisRecordCodec, EncodeDecodeRoundTripsEveryState) {
  idem::IdempotencyRecord rec;
  rec.idempotency_key = "idempotency:events:a:b";
  rec.event_id = "not-in-the-key";
  rec.event_type = "t";
  rec.fingerprint = std::string("f\0p", 3);
  rec.token = 1'700'000'000'000'123;
  rec.attempt = 3;
  rec.first_seen_at = ts(1'699'999'999'000);
  rec.expires_at = ts(1'700'000'100'000);
  rec.checkpoint = idem::Checkpoint{"step;2", std::string("x\0,y", 4)};
  for (int state = 0; state < 4; ++state) {
    idem::IdempotencyRecord r = rec;
    switch (state) {
      case 0:
        r.status = idem::ProcessingStatus::kProcessing;
        r.lease_expires_at = ts(1'700'000'030'000);
        break;
      case 1:
        r.status = idem::ProcessingStatus::kCompleted;
        r.result = "{\"ok\":true}";
        r.completed_at = ts(1'700'000'000'500);
        r.lease_expires_at = *r.completed_at;
        break;
      case 2:
      case 3:
        r.status = idem::ProcessingStatus::kFailed;
        r.retryable = state == 2;
        r.error = "";
        r.completed_at = ts(1'700'000'000'500);
        r.lease_expires_at = *r.completed_at;
        break;
    }
    SCOPED_TRACE(state);
    auto bytes = rd::encode_record(r.idempotency_key, r);
    ASSERT_TRUE(bytes.has_value());
    auto back = rd::decode_record(r.idempotency_key, *bytes, std::nullopt);
    ASSERT_TRUE(back.ok()) << back.error().to_string() << " for " << *bytes;
    EXPECT_EQ(back->record, r) << *bytes;
  }
}

TEST(RedisRecordCodec, ReadsFormatOneWithTheExpiryItIsGiven) {
  // Written by the previous version: absolute first-seen time, no expiry.
  const std::string key = "idempotency:events:3f2b";
  const std::string v1 = "C,1764316609123456,1,1764316609123,,77,E;4,0,0,5,,,;hello";
  auto without = rd::decode_record(key, v1, std::nullopt);
  ASSERT_TRUE(without.ok()) << without.error().to_string();
  EXPECT_FALSE(without->expiry_known) << "a plain GET cannot know a format-1 record's expiry";
  auto with = rd::decode_record(key, v1, 1'764'400'000'000);
  ASSERT_TRUE(with.ok());
  EXPECT_TRUE(with->expiry_known);
  EXPECT_EQ(with->record.expires_at, ts(1'764'400'000'000));
  EXPECT_EQ(with->record.first_seen_at, ts(1'764'316'609'123));
  EXPECT_EQ(with->record.completed_at, ts(1'764'316'609'200));
  EXPECT_EQ(with->record.result, "hello");
  EXPECT_EQ(with->record.event_id, "3f2b");
  // No TTL (someone ran PERSIST): never expires.
  EXPECT_EQ(rd::decode_record(key, v1, -1)->record.expires_at, idem::Timestamp::max());
}

TEST(RedisRecordCodec, WatchedRecordsDecodeLikeTheOthers) {
  const std::string key = "idempotency:events:evt";
  auto plain = rd::decode_record(key, "P,5000000,1,0,6000,,E,100;3,0,0,,,,;", std::nullopt);
  auto watched = rd::decode_record(key, "P,5000000,1,0,6000,,W,100;3,0,0,,,,;", std::nullopt);
  ASSERT_TRUE(plain.ok() && watched.ok());
  EXPECT_FALSE(plain->watched);
  EXPECT_TRUE(watched->watched);
  EXPECT_EQ(plain->record, watched->record);
}

TEST(RedisRecordCodec, MalformedValuesAreCorruptNeverTrusted) {
  const std::string key = "k";
  for (const char* bad : {"", "P", "Q,1,1,0,,,E,1;0,0,0,,,,;", "P,1,1,0,,,E,1;0,0,0,,,;", "P,1,1,0,,,E,1;0,0,9,,,,;ab",
                          "P,1,1,0,,,E,1;0,0,0,,,,;trailing", "P,-1,1,0,,,E,1;0,0,0,,,,;", "P,1,1,5,,,E,1;0,0,0,,,,;",
                          "P,1,1,0,,,Z,1;0,0,0,,,,;", "P,1,1,0,,,E,1,2;0,0,0,,,,;", "P,1,1,0,,,E,1;2,0,0,,,,;",
                          "P,99999999999999999999,1,0,,,E,1;0,0,0,,,,;"}) {
    auto d = rd::decode_record(key, bad, std::nullopt);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().code(), idem::ErrorCode::kCorrupt) << bad;
  }
}

// The client-side finish (the swap script's input) writes exactly what
// decoding the claimed record, finishing it, and encoding it again gives.
TEST(RedisRecordCodec, FinishRecordMatchesDecodeFinishEncode) {
  const std::string key = "idempotency:events:evt-7";
  const std::vector<std::string> claimed = {
      "P,1764316609123456,1,0,1764316639123,,E,600000;5,13,2,,,,;order.createdfp",
      "P,1764316609123456,3,42,1764316639123,,e,600000;2,1,0,,,,;idt",
      "P,1764316609123456,1,0,1764316639123,,W,600000;5,0,0,,,4,2;stepxy",
      "P,1764316609123456,2,5,1764316639123,,w,700000;2,0,3,,,0,;idfp!",
  };
  for (const std::string& c : claimed) {
    for (char status : {'C', 'F', 'X'}) {
      SCOPED_TRACE(c + " -> " + status);
      const idem::Timestamp now = ts(1'764'316'609'500);
      auto spliced = rd::finish_record(c, status, "the value", now, milliseconds(86'400'000));
      ASSERT_TRUE(spliced.has_value());
      auto d = rd::decode_record(key, c, std::nullopt);
      ASSERT_TRUE(d.ok()) << d.error().to_string();
      idem::IdempotencyRecord r = d->record;
      r.status = status == 'C' ? idem::ProcessingStatus::kCompleted : idem::ProcessingStatus::kFailed;
      r.retryable = status != 'X';
      (status == 'C' ? r.result : r.error) = "the value";
      r.completed_at = std::max(now, r.first_seen_at);
      r.lease_expires_at = *r.completed_at;
      r.expires_at = *r.completed_at + milliseconds(86'400'000);
      auto back = rd::decode_record(key, spliced->first, std::nullopt);
      ASSERT_TRUE(back.ok()) << back.error().to_string() << " for " << spliced->first;
      EXPECT_EQ(back->record, r) << spliced->first;
      EXPECT_FALSE(back->watched) << "finishing clears the waiter's flag";
      EXPECT_EQ(spliced->second, r.expires_at.time_since_epoch().count());
    }
  }
  // Only format-2 PROCESSING records.
  EXPECT_FALSE(rd::finish_record("C,1,1,0,,5,E,10;0,0,0,1,,,;r", 'C', "v", ts(1), milliseconds(1)).has_value());
  EXPECT_FALSE(
      rd::finish_record("P,1764316609123456,1,1764316609123,,,E;0,0,0,,,,;", 'C', "v", ts(1), milliseconds(1)));
}

// --- the server clock estimate ---------------------------------------------

// A simulated server whose clock is `offset` ahead of the local steady clock
// and runs `ppm` parts per million faster; TIME executes `delay` after the
// request is sent.
struct SimServer {
  Time origin = Time(std::chrono::seconds(1000));
  long long offset_us = 1'700'000'000'000'000 - 1'000'000'000;
  double ppm = 0;
  long long server_us(Time t) const {
    const double local = static_cast<double>(std::chrono::duration_cast<microseconds>(t - origin).count());
    return offset_us + 1'000'000'000 + static_cast<long long>(local * (1.0 + ppm * 1e-6));
  }
};

TEST(RedisServerClock, EstimateIsALowerBoundWithinTheStatedUncertainty) {
  for (double ppm : {-900.0, -100.0, 0.0, 100.0, 900.0}) {
    SimServer server;
    server.ppm = ppm;
    rd::ServerClock clock;
    Time now = server.origin;
    EXPECT_FALSE(clock.now_us(now).has_value());
    std::mt19937 rng(7);
    for (int i = 0; i < 200; ++i) {
      // A TIME round trip of 20..2000 µs, the server reading its clock
      // somewhere inside it.
      const auto rtt = microseconds(20 + rng() % 1980);
      const auto exec = microseconds(rng() % static_cast<unsigned>(rtt.count() + 1));
      clock.observe(server.server_us(now + exec), now, now + rtt);
      now += rtt;
      for (int j = 0; j < 20; ++j) {
        now += microseconds(rng() % 20'000);  // up to 20 ms between samples
        const long long truth = server.server_us(now);
        const long long estimate = *clock.now_us(now);
        const long long bound = clock.uncertainty(now)->count();
        SCOPED_TRACE(testing::Message() << "ppm " << ppm << " sample " << i);
        ASSERT_LE(estimate, truth) << "the estimate ran ahead of the server clock";
        ASSERT_GE(estimate, truth - bound - 1) << "the estimate is further behind than its stated uncertainty";
      }
    }
  }
}

TEST(RedisServerClock, KeepsTheTighterSampleAndAsksForRefresh) {
  SimServer server;
  rd::ServerClock clock;
  const Time t0 = server.origin;
  EXPECT_TRUE(clock.needs_refresh(t0));
  clock.observe(server.server_us(t0), t0, t0 + microseconds(50));
  EXPECT_EQ(clock.uncertainty(t0 + microseconds(50))->count(), 50);
  EXPECT_FALSE(clock.needs_refresh(t0 + milliseconds(50)));
  // A sample with a 5 ms round trip (queued behind a pipeline) is worse
  // than the aged 50 µs one: kept out.
  const Time t1 = t0 + milliseconds(10);
  clock.observe(server.server_us(t1), t1, t1 + milliseconds(5));
  EXPECT_LT(clock.uncertainty(t1 + milliseconds(5))->count(), 200);
  EXPECT_TRUE(clock.needs_refresh(t0 + milliseconds(150)));
  // A refresh in flight or just tried is not asked for again.
  ASSERT_TRUE(clock.try_begin_refresh(t0 + milliseconds(150)));
  EXPECT_FALSE(clock.try_begin_refresh(t0 + milliseconds(150)));
  clock.end_refresh();
  EXPECT_FALSE(clock.needs_refresh(t0 + milliseconds(200))) << "tried 50 ms ago";
}

// A claim chooses its token from the estimate only while the estimate is
// tight; a sample taken while the client's thread was descheduled (a
// 300 ms round trip) leaves the choice to the claim script (server TIME).
TEST(RedisServerClock, ClaimsUseOnlyATightEstimate) {
  SimServer server;
  rd::ServerClock clock;
  const Time t0 = server.origin;
  EXPECT_FALSE(clock.claim_us(t0).has_value());
  clock.observe(server.server_us(t0 + milliseconds(150)), t0, t0 + milliseconds(300));
  EXPECT_TRUE(clock.now_us(t0 + milliseconds(300)).has_value());
  EXPECT_FALSE(clock.claim_us(t0 + milliseconds(300)).has_value()) << "a 300 ms wide estimate was used for a claim";
  const Time t1 = t0 + milliseconds(400);
  clock.observe(server.server_us(t1), t1, t1 + microseconds(200));
  ASSERT_TRUE(clock.claim_us(t1 + milliseconds(1)).has_value());
  EXPECT_EQ(*clock.claim_us(t1 + milliseconds(1)), *clock.now_us(t1 + milliseconds(1)));
  // The bound holds while the sample ages: 200 µs + 2 x 1000 ppm x age <= 10 ms.
  EXPECT_TRUE(clock.claim_us(t1 + std::chrono::seconds(4)).has_value());
  EXPECT_FALSE(clock.claim_us(t1 + std::chrono::seconds(6)).has_value());
}

// The bound of docs/design.md: a key's next life gets a higher token than its
// last one when the new claim is made more than the claimant's uncertainty
// U after the previous token was issued (its estimate is at most U behind
// the server clock, and the previous token was not ahead of it). Two
// independent estimators (two processes) alternate on one key, each claim
// just past the bound; and below the bound the test shows it can fail.
TEST(RedisServerClock, TokensIncreaseAcrossProcessesBeyondTheBound) {
  SimServer server;
  server.ppm = 300;
  rd::ServerClock a;
  rd::ServerClock b;
  Time now = server.origin;
  a.observe(server.server_us(now + microseconds(30)), now, now + microseconds(80));
  b.observe(server.server_us(now + microseconds(500)), now, now + microseconds(900));
  now += microseconds(900);
  long long last = *a.now_us(now);
  Time issued = now;
  int below_bound_misses = 0;
  for (int i = 1; i < 2000; ++i) {
    rd::ServerClock& c = i % 2 == 0 ? a : b;
    // Just past the bound.
    now = issued + *c.uncertainty(issued) + microseconds(10);
    const long long token = *c.now_us(now);
    ASSERT_GT(token, last) << "claim " << i << " " << (now - issued).count() << " ns after the previous token";
    // Well inside the bound, the other estimator may well be behind.
    if (*c.now_us(issued + microseconds(1)) <= last) ++below_bound_misses;
    last = token;
    issued = now;
    if (i % 200 == 199) {  // refreshes, tight and loose
      a.observe(server.server_us(now + microseconds(10)), now, now + microseconds(40));
      b.observe(server.server_us(now + microseconds(300)), now, now + microseconds(700));
      now += microseconds(700);
      issued = now;
      last = std::max<long long>(last, *a.now_us(now));
    }
  }
  EXPECT_GT(below_bound_misses, 0) << "the bound is not needed? then the test does not test it";
}

TEST(RedisTokens, OneProcessNeverRepeatsOrGoesBack) {
  std::vector<std::thread> threads;
  std::vector<std::vector<idem::Token>> seen(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20'000; ++i)
        seen[static_cast<std::size_t>(t)].push_back(rd::next_token(1'000));  // a stuck clock
    });
  }
  for (auto& th : threads) th.join();
  std::vector<idem::Token> all;
  for (auto& s : seen) {
    for (std::size_t i = 1; i < s.size(); ++i) ASSERT_GT(s[i], s[i - 1]);
    all.insert(all.end(), s.begin(), s.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a token was handed out twice";
  // A token a script chose is folded in.
  rd::observe_token(all.back() + 1'000'000);
  EXPECT_GT(rd::next_token(1), all.back() + 1'000'000);
}

TEST(RedisClaimCache, TakeOnlyTheRecordOfThatToken) {
  rd::ClaimCache cache;
  cache.put("k", 5, "record-5");
  EXPECT_FALSE(cache.take("k", 4).has_value());
  EXPECT_EQ(cache.take("k", 5), "record-5");
  EXPECT_FALSE(cache.take("k", 5).has_value()) << "taken once";
  // Bounded: far more owners than fit never finish; it keeps working.
  for (int i = 0; i < 200'000; ++i) cache.put("key-" + std::to_string(i), 1, "r");
  cache.put("last", 9, "r9");
  EXPECT_EQ(cache.take("last", 9), "r9");
}

// ---------------------------------------------------------------------------
// JSON records (json_layout.h).

TEST(RedisJsonLayout, Iso8601AsTheOriginalModuleWroteIt) {
  const idem::Timestamp noon = ts(1'796'040'800'000);  // 2026-11-30T12:13:20Z
  struct Case {
    const char* text;
    long long ms;
  } cases[] = {
      {"2026-11-30T12:13:20", 0},                    // naive datetime.utcnow().isoformat(): UTC
      {"2026-11-30T12:13:20.123456", 123},           // microseconds, cut to ms
      {"2026-11-30T12:13:20.5Z", 500},               // one digit, Z
      {"2026-11-30T12:13:20.123456789+00:00", 123},  // nine digits
      {"2026-11-30T17:43:20.250+05:30", 250},        // east of UTC
      {"2026-11-30T07:13:20-05:00", 0},              // west of UTC
      {"2026-11-30T17:43:20+0530", 0},
      {"2026-11-30T13:13:20+01", 0},
      {"2026-11-30 12:13:20.001", 1},    // str(datetime)
      {"2026-12-01T00:13:20+12:00", 0},  // the next day there
  };
  for (const Case& c : cases) {
    const auto t = rd::parse_iso8601(c.text);
    ASSERT_TRUE(t.has_value()) << c.text;
    EXPECT_EQ(*t, noon + milliseconds(c.ms)) << c.text;
  }
  for (const char* bad : {"", "yesterday", "2026-11-30", "2026-13-01T00:00:00", "2026-02-30T00:00:00",
                          "2026-11-30T24:00:00", "2026-11-30T12:13:20+25:00", "2026-11-30T12:13:20 junk",
                          "2026-11-30T12:13:20.", "2026-11-30T12:13:20Z0", "２026-11-30T12:13:20"}) {
    EXPECT_FALSE(rd::parse_iso8601(bad).has_value()) << bad;
  }
  EXPECT_EQ(rd::format_iso8601(noon + milliseconds(7)), "2026-11-30T12:13:20.007+00:00");
  EXPECT_EQ(rd::parse_iso8601(rd::format_iso8601(ts(0))), ts(0));
  EXPECT_EQ(rd::format_iso8601(ts(951'782'400'000)), "2000-02-29T00:00:00.000+00:00");
}

std::string legacy(const std::string& status, const std::string& result, const std::string& error,
                   const std::string& completed) {
  return R"({"idempotency_key": "evt-1", "event_id": "evt-1", "event_type": "payment.created", "status": ")" + status +
         R"(", "result": )" + result + R"(, "error": )" + error +
         R"(, "first_seen_at": "2026-11-30T13:13:20.123456+01:00", "completed_at": )" + completed + "}";
}

TEST(RedisJsonLayout, LegacyRecordsInEveryState) {
  const std::string key = "idempotency:events:evt-1";
  const idem::Timestamp first = ts(1'796'040'800'123);
  const rd::LegacyPolicy policy{true, milliseconds(60'000)};
  auto completed = rd::decode_record(key,
                                     legacy("COMPLETED", R"({"b": 1, "a": [true, null, 2.5e3], "s": "\u00e9\/"})",
                                            "null", R"("2026-11-30T12:13:21Z")"),
                                     std::nullopt, policy);
  ASSERT_TRUE(completed.ok()) << completed.error().to_string();
  EXPECT_TRUE(completed->json);
  EXPECT_TRUE(completed->legacy);
  EXPECT_FALSE(completed->expiry_known);
  const idem::IdempotencyRecord& c = completed->record;
  EXPECT_EQ(c.status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(c.token, 0u);
  EXPECT_EQ(c.attempt, 1u);
  EXPECT_EQ(c.idempotency_key, key);
  EXPECT_EQ(c.event_id, "evt-1");
  EXPECT_EQ(c.event_type, "payment.created");
  EXPECT_EQ(c.first_seen_at, first);
  EXPECT_EQ(c.completed_at, ts(1'796'040'801'000));
  // Compact JSON, members in their order.
  EXPECT_EQ(c.result, std::optional<std::string>("{\"b\":1,\"a\":[true,null,2500.0],\"s\":\"\xc3\xa9/\"}"));
  EXPECT_EQ(c.lease_expires_at, *c.completed_at);

  auto no_result = rd::decode_record(key, legacy("COMPLETED", "null", "null", R"("2026-11-30T12:13:21Z")"),
                                     1'796'126'400'000, policy);
  ASSERT_TRUE(no_result.ok());
  EXPECT_FALSE(no_result->record.result.has_value());
  EXPECT_TRUE(no_result->expiry_known);
  EXPECT_EQ(no_result->record.expires_at, ts(1'796'126'400'000));

  auto failed = rd::decode_record(key, legacy("FAILED", "null", R"("card \"declined\"")", R"("2026-11-30T12:13:21")"),
                                  std::nullopt, policy);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->record.status, idem::ProcessingStatus::kFailed);
  EXPECT_TRUE(failed->record.retryable);
  EXPECT_EQ(failed->record.error, std::optional<std::string>("card \"declined\""));

  auto processing = rd::decode_record(key, legacy("PROCESSING", "null", "null", "null"), std::nullopt, policy);
  ASSERT_TRUE(processing.ok());
  EXPECT_EQ(processing->record.status, idem::ProcessingStatus::kProcessing);
  EXPECT_EQ(processing->record.lease_expires_at, first + milliseconds(60'000));
  EXPECT_FALSE(processing->record.completed_at.has_value());

  // Unknown members are ignored, as the model did; missing optional ones too.
  auto sparse = rd::decode_record(
      key, R"({"status": "PROCESSING", "first_seen_at": "2026-11-30T12:13:20.123", "extra": {"x": [1]}})", std::nullopt,
      policy);
  ASSERT_TRUE(sparse.ok()) << sparse.error().to_string();
  EXPECT_EQ(sparse->record.event_id, "");

  // Opt-out: a legacy record is then a foreign value.
  auto off = rd::decode_record(key, legacy("PROCESSING", "null", "null", "null"), std::nullopt,
                               rd::LegacyPolicy{false, milliseconds(1)});
  ASSERT_FALSE(off.ok());
  EXPECT_EQ(off.error().code(), idem::ErrorCode::kCorrupt);
}

TEST(RedisJsonLayout, GarbageIsCorruptAndNamesTheKey) {
  const std::string key = "idempotency:events:x";
  for (const std::string& bad : std::vector<std::string>{
           "{", "{}", R"({"status": "COMPLETED"})", R"({"status": "DONE", "first_seen_at": "2026-11-30T12:00:00"})",
           R"({"status": 1, "first_seen_at": "2026-11-30T12:00:00"})",
           R"({"status": "COMPLETED", "first_seen_at": "2026-11-30T12:00:00"} trailing)",
           R"({"status": "COMPLETED", "first_seen_at": "2026-11-30T12:00:00", "event_id": 5})",
           R"({"status": "COMPLETED", "first_seen_at": "2026-11-30T12:00:00", "result": {"a": 01}})",
           R"({"status": "COMPLETED", "first_seen_at": "2026-11-30T12:00:00", "completed_at": 5})",
           R"({"status": "PROCESSING", "first_seen_at": "2026-11-30T12:00:00", "token": "12x"})",
           R"({"status": "PROCESSING", "first_seen_at": "2026-11-30T12:00:00", "token": "0"})",
           std::string("{\"status\": \"COMPLETED\", \"first_seen_at\": \"2026-11-30T12:00:00\", \"error\": \"\xff\"}"),
           std::string(300, '[')}) {
    auto d = rd::decode_record(key, bad, std::nullopt);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().code(), idem::ErrorCode::kCorrupt) << bad;
    EXPECT_NE(d.error().message().find(key), std::string::npos) << d.error().to_string();
  }
}

idem::IdempotencyRecord json_record() {
  idem::IdempotencyRecord r;
  r.idempotency_key = "idempotency:events:e-7";
  r.event_id = "e-7";
  r.event_type = "order \"created\"";
  r.status = idem::ProcessingStatus::kCompleted;
  r.token = 1'764'316'609'123'456;
  r.attempt = 3;
  r.first_seen_at = ts(1'764'316'609'123);
  r.completed_at = ts(1'764'316'610'000);
  r.lease_expires_at = ts(1'764'316'610'000);
  r.expires_at = ts(1'764'403'010'000);
  r.fingerprint = std::string(64, 'a');
  return r;
}

TEST(RedisJsonLayout, IdemRecordsRoundTripEveryResult) {
  const std::string key = "idempotency:events:e-7";
  const std::vector<std::optional<std::string>> results{
      std::nullopt,
      std::string(""),
      std::string(R"({"charge": "c_1",  "amount": 1.50})"),  // an object: stored as is
      std::string(R"( {"a":1})"),                            // whitespace around: wrapped
      std::string("plain text"),
      std::string("[1,2]"),
      std::string(R"({"idem_value":"x"})"),  // looks like the wrapper: wrapped
      std::string("bin\0\xff\x01", 6),
      std::string("{\"a\":\"\xff\"}"),  // not UTF-8 inside an object
  };
  for (const auto& result : results) {
    idem::IdempotencyRecord r = json_record();
    r.result = result;
    r.checkpoint = idem::Checkpoint{"step", std::string("\0\xfe", 2)};
    r.error = std::string("bad\0\xff", 5);
    auto text = rd::encode_json_record(key, r);
    ASSERT_TRUE(text.has_value());
    EXPECT_EQ(text->front(), '{');
    auto back = rd::decode_record(key, *text, std::nullopt);
    ASSERT_TRUE(back.ok()) << back.error().to_string() << "\n" << *text;
    EXPECT_FALSE(back->legacy);
    EXPECT_TRUE(back->expiry_known);
    EXPECT_EQ(back->record, r) << *text;
    // What the original model reads: "result" is an object or null.
    const auto at = text->find("\"result\":");
    ASSERT_NE(at, std::string::npos);
    const char next = (*text)[at + 9];
    EXPECT_TRUE(next == '{' || next == 'n') << *text;
  }
  idem::IdempotencyRecord r = json_record();
  r.result = R"({"charge": "c_1",  "amount": 1.50})";
  EXPECT_NE(rd::encode_json_record(key, r)->find(R"("result":{"charge": "c_1",  "amount": 1.50},)"), std::string::npos);
  r.event_id = "\xff";
  EXPECT_FALSE(rd::encode_json_record(key, r).has_value()) << "an event id must be UTF-8";
}

TEST(RedisJsonLayout, ClaimAndFinishAsTheScriptsWouldWriteThem) {
  idem::ClaimRequest req;
  req.key = "idempotency:events:evt-42";
  req.event_id = "evt-42";
  req.event_type = "t";
  req.fingerprint = "fp";
  req.lease = milliseconds(30'000);
  req.ttl = milliseconds(600'000);
  auto claim = rd::new_json_claim(req, 1'764'316'609'123'456);
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->value,
            R"({"idempotency_key":"evt-42","event_id":"evt-42","event_type":"t","status":"PROCESSING","result":null,)"
            R"("error":null,"first_seen_at":"2025-11-28T07:56:49.123+00:00","completed_at":null,)"
            R"("token":"1764316609123456","attempt":1,"lease_expires_at_ms":1764316639123,)"
            R"("expires_at_ms":1764317209123,"fingerprint":"fp","retryable":true,"checkpoint":null})");
  EXPECT_EQ(claim->expire_at_ms, 1'764'317'209'123);
  auto done = rd::finish_json_record(req.key, claim->value, 'C', "ok", ts(1'764'316'610'000), milliseconds(1000));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->second, 1'764'316'611'000);
  auto d = rd::decode_record(req.key, done->first, std::nullopt);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->record.status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ(d->record.result, std::optional<std::string>("ok"));
  EXPECT_EQ(d->record.completed_at, ts(1'764'316'610'000));
  auto failed = rd::finish_json_record(req.key, claim->value, 'X', "no", ts(1'764'316'610'000), milliseconds(1000));
  ASSERT_TRUE(failed.has_value());
  d = rd::decode_record(req.key, failed->first, std::nullopt);
  EXPECT_FALSE(d->record.retryable);
  EXPECT_EQ(d->record.error, std::optional<std::string>("no"));
  // A record rewritten by Lua's cjson: members reordered, '/' escaped,
  // numbers as cjson prints them.
  const std::string lua =
      R"({"checkpoint":{"name":"a\/b","data":"x"},"attempt":2,"retryable":true,"token":"1764316609123456",)"
      R"("expires_at_ms":1764317209123,"lease_expires_at_ms":1764316639123,"status":"PROCESSING",)"
      R"("first_seen_at":"2025-11-28T07:56:49.123+00:00","event_id":"evt-42","event_type":"t",)"
      R"("idempotency_key":"evt-42","fingerprint":"fp","result":null,"error":null,"completed_at":null,"watched":true})";
  d = rd::decode_record(req.key, lua, std::nullopt);
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_TRUE(d->watched);
  EXPECT_EQ(d->record.attempt, 2u);
  EXPECT_EQ(d->record.checkpoint, (idem::Checkpoint{"a/b", "x"}));
  EXPECT_EQ(rd::finish_json_fields('C', "{\"a\":1}"), R"("result":{"a":1},"error":null)");
  EXPECT_EQ(rd::finish_json_fields('F', "x"), R"("result":null,"error":"x")");
}

}  // namespace
