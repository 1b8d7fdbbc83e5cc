// Benchmarks of RedisStore against redis-benchmark on the same redis-server,
// in the same run, so the ratios in docs/redis.md compare like with like.
//
// The binary starts its own redis-server (persistence off) on a free port,
// unless IDEM_BENCH_REDIS_PORT names a running one. Baselines are measured by
// running redis-benchmark against that server; each baseline shows up as a
// benchmark with an ops_per_sec counter. Idem's figures are items_per_second.
//
//   build/bench/redis_bench --benchmark_format=console
//   build/bench/redis_bench --benchmark_out=redis.json --benchmark_out_format=json
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

struct BenchServer {
  std::unique_ptr<idem::test::RedisServer> server;
  int port = 0;
};

BenchServer& bench_server() {
  static BenchServer s = [] {
    BenchServer b;
    if (const char* p = std::getenv("IDEM_BENCH_REDIS_PORT"); p != nullptr && *p != '\0') {
      b.port = std::atoi(p);
      return b;
    }
    std::string err;
    b.server = idem::test::RedisServer::start({}, &err);
    if (!b.server) {
      std::cerr << "cannot start redis-server: " << err << "\n";
      std::exit(1);
    }
    b.port = b.server->port();
    return b;
  }();
  return s;
}

std::string url(const std::string& query = "") {
  return "redis://127.0.0.1:" + std::to_string(bench_server().port) + "/0" + query;
}

std::shared_ptr<idem::Store> shared_store() {
  static std::shared_ptr<idem::Store> store = [] {
    const char* q = std::getenv("IDEM_BENCH_REDIS_QUERY");  // e.g. "?pool_size=4"
    auto s = idem::RedisStore::open(url(q != nullptr ? q : ""));
    if (!s.ok()) {
      std::cerr << s.error().to_string() << "\n";
      std::exit(1);
    }
    return *s;
  }();
  return store;
}

// ---------------------------------------------------------------------------
// Baselines: redis-benchmark on the same server.

double redis_benchmark_rate(const std::vector<std::string>& args) {
  const std::string bin = idem::test::find_binary("redis-benchmark", "IDEM_REDIS_BENCHMARK");
  if (bin.empty()) return 0;
  std::vector<std::string> argv = {bin, "-h", "127.0.0.1", "-p", std::to_string(bench_server().port), "--csv", "-q"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  if (idem::test::run_command(argv, &out, std::chrono::minutes(5)) != 0) return 0;
  // --csv: "test","rps",... ; the rate is the second field of the last data line.
  std::istringstream in(out);
  std::string line;
  double rate = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line.starts_with("\"test\"")) continue;
    const auto a = line.find("\",\"");
    if (a == std::string::npos) continue;
    const auto b = line.find('"', a + 3);
    rate = std::atof(line.substr(a + 3, b - a - 3).c_str());
  }
  return rate;
}

void Baseline(benchmark::State& state, std::vector<std::string> args) {
  double rate = 0;
  for (auto _ : state) rate = redis_benchmark_rate(args);
  if (rate <= 0) state.SkipWithError("redis-benchmark not available or failed");
  state.counters["ops_per_sec"] = rate;
}

// The issue's reference points: SET NX with 50 clients, unpipelined and 16
// deep; GET likewise; one client, unpipelined SET.
BENCHMARK_CAPTURE(Baseline, set_nx_c50,
                  std::vector<std::string>{"-c", "50", "-n", "200000", "-r", "100000000", "SET", "bl:__rand_int__", "v",
                                           "NX", "PX", "60000"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, set_nx_c50_p16,
                  std::vector<std::string>{"-c", "50", "-n", "1000000", "-P", "16", "-r", "100000000", "SET",
                                           "bl:__rand_int__", "v", "NX", "PX", "60000"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, get_c50, std::vector<std::string>{"-c", "50", "-n", "200000", "-t", "get"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, get_c50_p16, std::vector<std::string>{"-c", "50", "-n", "1000000", "-P", "16", "-t", "get"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, set_c1,
                  std::vector<std::string>{"-c", "1", "-n", "50000", "-r", "100000000", "SET", "bl:__rand_int__", "v",
                                           "PX", "60000"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Idem.

std::atomic<std::uint64_t> g_key_counter{0};

idem::ClaimRequest claim_req(const std::string& key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = std::string_view(key).substr(key.rfind(':') + 1);
  r.event_type = "bench";
  r.lease = std::chrono::seconds(30);
  r.ttl = std::chrono::seconds(600);
  return r;
}

// A new event: claim (acquired) + complete. Two round trips, each pipelined
// with whatever the other threads send at the same moment.
void NewEvent(benchmark::State& state) {
  auto store = shared_store();
  const std::string result = R"({"ok":true,"id":"0123456789"})";
  std::uint64_t failures = 0;
  std::string first_error;
  for (auto _ : state) {
    const std::string key = "idempotency:events:bn-" + std::to_string(g_key_counter.fetch_add(1));
    auto out = store->claim(claim_req(key));
    if (!out) {
      if (failures++ == 0) first_error = out.error().to_string();
      continue;
    }
    idem::Status st =
        store->complete({.key = key, .token = out->token, .result = result, .ttl = std::chrono::seconds(600)});
    if (!out->acquired() || !st) {
      if (failures++ == 0) first_error = st ? "not acquired" : st.error().to_string();
    }
  }
  if (failures > 0) state.SkipWithError(("store errors during the run: " + first_error).c_str());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(NewEvent)->Threads(1)->Threads(64)->UseRealTime()->MinTime(3.0);

// A duplicate of a completed event: one claim that returns the cached result.
constexpr int kCompletedKeys = 10'000;
void Duplicate(benchmark::State& state) {
  auto store = shared_store();
  // Every thread waits here until the keys exist (thread-safe static init).
  static const bool prepared = [&] {
    std::vector<std::string> keys;
    for (int i = 0; i < kCompletedKeys; ++i) keys.push_back("idempotency:events:dup-" + std::to_string(i));
    std::vector<idem::ClaimRequest> batch;
    for (const auto& k : keys) batch.push_back(claim_req(k));
    auto outs = store->claim_many(batch);
    if (!outs) return false;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if ((*outs)[i].acquired()) {
        (void)store->complete(
            {.key = keys[i], .token = (*outs)[i].token, .result = "cached", .ttl = std::chrono::seconds(600)});
      }
    }
    return true;
  }();
  if (!prepared) state.SkipWithError("could not prepare completed keys");
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) * 7919;
  std::uint64_t failures = 0;
  for (auto _ : state) {
    const std::string key = "idempotency:events:dup-" + std::to_string(i++ % kCompletedKeys);
    auto out = store->claim(claim_req(key));
    if (!out || out->status != idem::ClaimStatus::kCompleted) ++failures;
  }
  if (failures > 0) state.SkipWithError("duplicates did not come back as completed (or store errors)");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Duplicate)->Threads(1)->Threads(64)->UseRealTime()->MinTime(3.0);

// claim_many of 100 new keys: one round trip.
void ClaimMany100(benchmark::State& state) {
  auto store = shared_store();
  for (auto _ : state) {
    std::vector<std::string> keys;
    for (int i = 0; i < 100; ++i) keys.push_back("idempotency:events:bm-" + std::to_string(g_key_counter.fetch_add(1)));
    std::vector<idem::ClaimRequest> batch;
    for (const auto& k : keys) batch.push_back(claim_req(k));
    auto outs = store->claim_many(batch);
    if (!outs) state.SkipWithError(outs.error().to_string().c_str());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(ClaimMany100)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
