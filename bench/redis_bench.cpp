// File: bench/redis_bench.cpp
//
// Benchmarks of RedisStore against redis-benchmark on the same redis-server,
// in the same run, so the ratios in docs/redis.md compare like with like.
//
// The binary starts its own redis-server (persistence off) on a free port,
// unless IDEM_BENCH_REDIS_PORT names a running one. Baselines run
// redis-benchmark against that server and show up with an ops_per_sec
// counter; Idem's figures are items_per_second (events, or claims for
// claim_many). Every Idem benchmark also reports server_us_per_item: the
// Redis server's CPU time (INFO cpu, user + sys) per item.
//
//   P16 = redis-benchmark -c 50 -P 16 SET key v NX PX 60000
//   c1  = redis-benchmark -c 1 SET key v PX 60000
//
//   build/ci/bench/redis_bench                                   # everything
//   build/ci/bench/redis_bench --benchmark_filter='Baseline|Async'
//   IDEM_BENCH_REDIS_QUERY='?pool_size=4' build/ci/bench/redis_bench
//
// The asynchronous benchmarks drive the store's *_async API from one thread
// with N events in flight: each completion callback (on the store's I/O
// thread) issues the event's next step or the next event.
#include <benchmark/benchmark.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/processor.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using namespace std::chrono_literals;

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

// fresh_keyspace() empties the server the bench started (never one named by
// IDEM_BENCH_REDIS_PORT), so that every benchmark starts on the same small
// keyspace as the baselines: after millions of new events Redis's lookups
// slow down (a large dict, cache misses), which would be charged to Idem.
void fresh_keyspace() {
  if (!bench_server().server) return;
  bench_server().server->command({"FLUSHALL"});
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
    if (auto st = (*s)->ping(); !st) {
      std::cerr << st.error().to_string() << "\n";
      std::exit(1);
    }
    return *s;
  }();
  return store;
}

// The same server through a store writing JSON records (layout=json, the
// migration layout): its cost next to the packed layout's.
std::shared_ptr<idem::Store> json_store() {
  static std::shared_ptr<idem::Store> store = [] {
    auto s = idem::RedisStore::open(url("?layout=json"));
    if (!s.ok() || !(*s)->ping()) {
      std::cerr << "cannot open the layout=json store\n";
      std::exit(1);
    }
    return *s;
  }();
  return store;
}

// Redis server CPU seconds (user + sys) so far, from INFO cpu.
double server_cpu_seconds() {
  auto info = idem::test::raw_command({"127.0.0.1", static_cast<std::uint16_t>(bench_server().port)}, {"INFO", "cpu"});
  if (!info) return 0;
  double total = 0;
  for (const char* field : {"used_cpu_sys:", "used_cpu_user:"}) {
    const auto pos = info->find(field);
    if (pos != std::string::npos) total += std::atof(info->c_str() + pos + std::strlen(field));
  }
  return total;
}

// ServerCpu measures the server's CPU over a benchmark and reports µs/item.
class ServerCpu {
 public:
  ServerCpu() : start_(server_cpu_seconds()) {}
  void report(benchmark::State& state, double items) const {
    if (items <= 0) return;
    state.counters["server_us_per_item"] = (server_cpu_seconds() - start_) * 1e6 / items;
  }

 private:
  double start_;
};

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
  const ServerCpu cpu;
  double n = 0;
  for (auto _ : state) rate = redis_benchmark_rate(args);
  if (rate <= 0) state.SkipWithError("redis-benchmark not available or failed");
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-n") n = std::atof(args[i + 1].c_str());
  }
  state.counters["ops_per_sec"] = rate;
  cpu.report(state, n);
}

// P16 and c1, the issue's reference points; GET P16 for duplicates.
BENCHMARK_CAPTURE(Baseline, set_nx_p16,
                  std::vector<std::string>{"-c", "50", "-n", "1000000", "-P", "16", "-r", "100000000", "SET",
                                           "bl:__rand_int__", "v", "NX", "PX", "60000"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, get_p16, std::vector<std::string>{"-c", "50", "-n", "1000000", "-P", "16", "-t", "get"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Baseline, set_c1,
                  std::vector<std::string>{"-c", "1", "-n", "50000", "-r", "100000000", "SET", "bl:__rand_int__", "v",
                                           "PX", "60000"})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Idem.

// Keys are unique across runs, so that a server kept between runs
// (IDEM_BENCH_REDIS_PORT) never answers with an earlier run's record.
std::atomic<std::uint64_t> g_key_counter{
    static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count()) *
    1000};
constexpr std::string_view kResult = R"({"ok":true,"id":"0123456789"})";
constexpr std::string_view kPrefix = "idempotency:events:";

// Keys are "idempotency:events:<tag>-<n>", formatted into a buffer the
// callback owns: the store copies what it keeps.
struct KeyBuf {
  char buf[64];
  std::string_view make(std::string_view tag, std::uint64_t n) {
    std::memcpy(buf, kPrefix.data(), kPrefix.size());
    char* p = buf + kPrefix.size();
    std::memcpy(p, tag.data(), tag.size());
    p += tag.size();
    *p++ = '-';
    p = std::to_chars(p, buf + sizeof(buf), n).ptr;
    return {buf, static_cast<std::size_t>(p - buf)};
  }
};

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = key.substr(key.rfind('-') + 1);
  r.event_type = "bench";
  r.lease = 30s;
  r.ttl = 600s;
  return r;
}

// ---- asynchronous, N in flight from one thread --------------------------

// AsyncDriver keeps `inflight` events going until `total` have finished.
// Each event is a claim; an acquired claim is completed. `dup_share` of the
// events (0..1) are claims of already-completed keys.
class AsyncDriver {
 public:
  AsyncDriver(std::shared_ptr<idem::Store> store, std::uint64_t total, double dup_share, std::uint64_t dup_keys)
      : store_(std::move(store)), total_(total), dup_share_(dup_share), dup_keys_(dup_keys) {}

  // run() returns once every event has finished.
  void run(int inflight) {
    for (int i = 0; i < inflight; ++i) next_event(static_cast<std::uint64_t>(i));
    std::unique_lock lock(mutex_);
    finished_cv_.wait(lock, [&] { return finished_ == total_ && active_ == 0; });
  }

  std::uint64_t errors() const { return errors_.load(); }
  const std::string& first_error() const { return first_error_; }

 private:
  void next_event(std::uint64_t chain) {
    const std::uint64_t n = started_.fetch_add(1);
    if (n >= total_) return;
    active_.fetch_add(1);
    thread_local KeyBuf key;
    thread_local std::minstd_rand rng(12345);
    const bool dup = dup_share_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < dup_share_;
    const std::string_view k = dup ? key.make("dup", rng() % dup_keys_) : key.make("an", g_key_counter.fetch_add(1));
    std::string owned(k);
    store_->claim_async(claim_req(k), [this, chain, owned = std::move(owned)](idem::Result<idem::ClaimOutcome> out) {
      if (!out) {
        error(out.error().to_string());
        done(chain);
        return;
      }
      if (!out->acquired()) {
        done(chain);
        return;
      }
      idem::CompleteRequest c{.key = owned, .token = out->token, .result = kResult, .ttl = 600s};
      store_->complete_async(c, [this, chain](idem::Status st) {
        if (!st) error(st.error().to_string());
        done(chain);
      });
    });
  }

  void error(std::string what) {
    if (errors_.fetch_add(1) == 0) first_error_ = std::move(what);
  }

  void done(std::uint64_t chain) {
    next_event(chain);
    active_.fetch_sub(1);
    std::lock_guard lock(mutex_);
    if (++finished_ == total_) finished_cv_.notify_all();
  }

  std::shared_ptr<idem::Store> store_;
  const std::uint64_t total_;
  const double dup_share_;
  const std::uint64_t dup_keys_;
  std::atomic<std::uint64_t> started_{0};
  std::atomic<std::uint64_t> active_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::string first_error_;
  std::mutex mutex_;
  std::condition_variable finished_cv_;
  std::uint64_t finished_ = 0;
};

constexpr std::uint64_t kCompletedKeys = 20'000;

// prepare_completed_keys() completes the duplicates' keys in `store`'s
// layout, after the benchmark's FLUSHALL.
bool prepare_completed_keys(const std::shared_ptr<idem::Store>& store) {
  const bool prepared = [&] {
    std::vector<std::string> keys;
    KeyBuf kb;
    for (std::uint64_t i = 0; i < kCompletedKeys; ++i) keys.emplace_back(kb.make("dup", i));
    for (std::size_t start = 0; start < keys.size(); start += 500) {
      std::vector<idem::ClaimRequest> batch;
      for (std::size_t i = start; i < std::min(keys.size(), start + 500); ++i) batch.push_back(claim_req(keys[i]));
      auto outs = store->claim_many(batch);
      if (!outs) return false;
      for (std::size_t i = 0; i < outs->size(); ++i) {
        if ((*outs)[i].acquired()) {
          (void)store->complete({.key = keys[start + i], .token = (*outs)[i].token, .result = "cached", .ttl = 3600s});
        }
      }
    }
    return true;
  }();
  return prepared;
}

void run_async(benchmark::State& state, double dup_share, std::shared_ptr<idem::Store> store = shared_store()) {
  fresh_keyspace();
  if (dup_share > 0 && !prepare_completed_keys(store)) state.SkipWithError("could not prepare completed keys");
  const auto inflight = static_cast<int>(state.range(0));
  constexpr std::uint64_t kPerIteration = 50'000;
  const ServerCpu cpu;
  std::uint64_t errors = 0;
  std::string first;
  for (auto _ : state) {
    AsyncDriver driver(store, kPerIteration, dup_share, kCompletedKeys);
    driver.run(inflight);
    if (driver.errors() > 0 && errors++ == 0) first = driver.first_error();
  }
  if (errors > 0) state.SkipWithError(("store errors during the run: " + first).c_str());
  const auto items = static_cast<double>(state.iterations()) * static_cast<double>(kPerIteration);
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
  cpu.report(state, items);
}

// New events (claim + complete), N in flight.
void AsyncNewEvents(benchmark::State& state) { run_async(state, 0.0); }
BENCHMARK(AsyncNewEvents)->Arg(64)->Arg(256)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);

// A stream of 95% duplicates of completed events and 5% new ones.
void AsyncDuplicates95(benchmark::State& state) { run_async(state, 0.95); }
BENCHMARK(AsyncDuplicates95)->Arg(64)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);

// The same two with layout=json records (docs/redis.md, JSON records).
void AsyncNewEventsJson(benchmark::State& state) { run_async(state, 0.0, json_store()); }
BENCHMARK(AsyncNewEventsJson)->Arg(64)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);
void AsyncDuplicates95Json(benchmark::State& state) { run_async(state, 0.95, json_store()); }
BENCHMARK(AsyncDuplicates95Json)->Arg(64)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);

// ---- synchronous, through the store --------------------------------------

void SyncNewEvent(benchmark::State& state) {
  auto store = shared_store();
  if (state.thread_index() == 0) fresh_keyspace();
  std::uint64_t failures = 0;
  std::string first_error;
  const ServerCpu cpu;
  KeyBuf kb;
  for (auto _ : state) {
    const std::string_view key = kb.make("sn", g_key_counter.fetch_add(1));
    auto out = store->claim(claim_req(key));
    if (!out) {
      if (failures++ == 0) first_error = out.error().to_string();
      continue;
    }
    idem::Status st = store->complete({.key = key, .token = out->token, .result = kResult, .ttl = 600s});
    if (!out->acquired() || !st) {
      if (failures++ == 0) first_error = st ? "not acquired" : st.error().to_string();
    }
  }
  if (failures > 0) state.SkipWithError(("store errors during the run: " + first_error).c_str());
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) cpu.report(state, static_cast<double>(state.iterations()) * state.threads());
}
BENCHMARK(SyncNewEvent)->Threads(1)->Threads(64)->UseRealTime()->MinTime(2.0);

void SyncDuplicate(benchmark::State& state) {
  auto store = shared_store();
  // One thread prepares, the others wait at the first iteration.
  if (state.thread_index() == 0) {
    fresh_keyspace();
    if (!prepare_completed_keys(shared_store())) state.SkipWithError("could not prepare completed keys");
  }
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) * 7919;
  std::uint64_t failures = 0;
  KeyBuf kb;
  for (auto _ : state) {
    auto out = store->claim(claim_req(kb.make("dup", i++ % kCompletedKeys)));
    if (!out || out->status != idem::ClaimStatus::kCompleted) ++failures;
  }
  if (failures > 0) state.SkipWithError("duplicates did not come back as completed (or store errors)");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(SyncDuplicate)->Threads(1)->Threads(64)->UseRealTime()->MinTime(2.0);

// ---- synchronous, through the guard --------------------------------------

void GuardNewEvent(benchmark::State& state) {
  static std::shared_ptr<idem::IdempotentEventProcessor> processor = [] {
    auto checker = std::make_shared<idem::IdempotencyChecker>(shared_store(), idem::CheckerOptions{});
    return std::make_shared<idem::IdempotentEventProcessor>(checker, idem::ProcessorOptions{.scope = "bench"});
  }();
  if (state.thread_index() == 0) fresh_keyspace();
  std::uint64_t failures = 0;
  std::string first_error;
  idem::Envelope envelope;
  envelope.event_type = "bench";
  const ServerCpu cpu;
  for (auto _ : state) {
    char buf[32];
    const std::uint64_t n = g_key_counter.fetch_add(1);
    envelope.event_id.assign(buf, std::to_chars(buf, buf + sizeof(buf), n).ptr);
    try {
      auto ctx = processor->process(envelope);
      if (ctx.should_process()) {
        ctx.mark_completed(std::string(kResult));
      } else if (failures++ == 0) {
        first_error = "not acquired: " + std::string(idem::to_string(ctx.status()));
      }
    } catch (const std::exception& e) {
      if (failures++ == 0) first_error = e.what();
    }
  }
  if (failures > 0) state.SkipWithError(("guard errors during the run: " + first_error).c_str());
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) cpu.report(state, static_cast<double>(state.iterations()) * state.threads());
}
BENCHMARK(GuardNewEvent)->Threads(1)->Threads(64)->UseRealTime()->MinTime(2.0);

// ---- claim_many ------------------------------------------------------------

// claim_many of 100 new keys: one round trip per batch.
void ClaimMany100(benchmark::State& state) {
  auto store = shared_store();
  fresh_keyspace();
  const ServerCpu cpu;
  KeyBuf kb;
  std::vector<std::string> keys(100);
  std::vector<idem::ClaimRequest> batch(100);
  for (auto _ : state) {
    for (std::size_t i = 0; i < 100; ++i) {
      keys[i] = kb.make("bm", g_key_counter.fetch_add(1));
      batch[i] = claim_req(keys[i]);
    }
    auto outs = store->claim_many(batch);
    if (!outs) state.SkipWithError(outs.error().to_string().c_str());
  }
  state.SetItemsProcessed(state.iterations() * 100);
  cpu.report(state, static_cast<double>(state.iterations() * 100));
}
BENCHMARK(ClaimMany100)->UseRealTime()->MinTime(2.0);

// claim_many_async of 100 new keys, N batches in flight from one thread.
void ClaimMany100Async(benchmark::State& state) {
  auto store = shared_store();
  fresh_keyspace();
  const auto inflight = static_cast<int>(state.range(0));
  constexpr int kBatchesPerIteration = 400;
  const ServerCpu cpu;
  std::atomic<bool> failed{false};
  for (auto _ : state) {
    std::mutex mutex;
    std::condition_variable cv;
    int started = 0;
    int finished = 0;
    std::function<void()> next = [&] {
      {
        std::lock_guard lock(mutex);
        if (started == kBatchesPerIteration) return;
        ++started;
      }
      KeyBuf kb;
      std::vector<std::string> keys(100);
      std::vector<idem::ClaimRequest> batch(100);
      for (std::size_t i = 0; i < 100; ++i) {
        keys[i] = kb.make("bma", g_key_counter.fetch_add(1));
        batch[i] = claim_req(keys[i]);
      }
      store->claim_many_async(batch, [&](idem::Result<std::vector<idem::ClaimOutcome>> outs) {
        if (!outs) failed.store(true);
        next();
        std::lock_guard lock(mutex);
        if (++finished == kBatchesPerIteration) cv.notify_all();
      });
    };
    for (int i = 0; i < inflight; ++i) next();
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return finished == kBatchesPerIteration; });
  }
  if (failed.load()) state.SkipWithError("claim_many_async failed");
  const double items = static_cast<double>(state.iterations()) * kBatchesPerIteration * 100;
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
  cpu.report(state, items);
}
BENCHMARK(ClaimMany100Async)->Arg(8)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Start the server (and the store) on the main thread: the server is
  // killed when the thread that started it exits (PR_SET_PDEATHSIG), and a
  // multi-threaded benchmark runs on threads that come and go.
  (void)shared_store();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
