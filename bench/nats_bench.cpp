// Messages per second through the Idem JetStream consumer, next to a bare
// consumer that only fetches and acks, on the same nats-server in the same
// run, so docs/nats.md can give ratios.
//
// The binary starts its own nats-server -js (file storage, temp dir) and, for
// the Redis rows, its own redis-server (persistence off), both on free
// loopback ports. Each iteration publishes IDEM_BENCH_NATS_MESSAGES (default
// 20000) fresh envelopes into a new stream (not timed), then times the
// consumer from start until every message is settled.
//
//   build/release/bench/nats_bench --benchmark_counters_tabular=true
//
// Rows: Bare (fetch + ack, one thread: the server's limit for this pattern),
// Idem/<store>/copies:<k> (Idem consumer, handler returns at once; k copies
// of each envelope, published in rounds, so (k-1)/k of the messages are
// duplicates).
#include <benchmark/benchmark.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "idem/idem.h"
#include "idem/integrations/nats.h"
#include "idem/stores/memory.h"
#include "integration/nats_support.h"
#include "integration/redis_support.h"
#include "integrations/nats/connection_impl.h"
#include "support/nats_server.h"

namespace {

using namespace std::chrono_literals;

int message_count() {
  const char* n = std::getenv("IDEM_BENCH_NATS_MESSAGES");
  return n != nullptr && std::atoi(n) > 0 ? std::atoi(n) : 20'000;
}

struct Servers {
  std::unique_ptr<idem::test::NatsServer> nats;
  std::unique_ptr<idem::test::RedisServer> redis;
  std::shared_ptr<idem::nats::Connection> conn;
  std::unique_ptr<idem::test::TempDir> dir;
};

Servers& servers() {
  static Servers s = [] {
    Servers out;
    std::string err;
    out.nats = idem::test::NatsServer::start(&err);
    if (!out.nats) {
      std::cerr << "cannot start nats-server: " << err << "\n";
      std::exit(1);
    }
    out.redis = idem::test::RedisServer::start({}, &err);
    if (!out.redis) std::cerr << "no redis-server (" << err << "): the Redis rows are skipped\n";
    out.conn = idem::nats::Connection::connect({.url = out.nats->url(), .name = "idem-bench"}).value();
    out.dir = std::make_unique<idem::test::TempDir>("nats-bench");
    return out;
  }();
  return s;
}

// A fresh stream holding `count` envelopes x `copies`, published
// asynchronously (the setup is not what is measured).
std::string fill_stream(int count, int copies) {
  static std::atomic<int> streams{0};
  const int n = ++streams;
  const std::string name = "BENCH" + std::to_string(n);
  const std::string subject = "bench" + std::to_string(n) + ".events";
  auto& s = servers();
  idem::nats::ensure_stream(*s.conn, {.name = name, .subjects = {subject}}).value();
  idem::nats::ensure_stream(*s.conn, {.name = name + "_DLQ", .subjects = {"idem.dlq." + name}}).value();
  jsCtx* js = s.conn->impl().js;
  // Copies come in rounds (every event, then every event again), as
  // redeliveries and producer retries do: most find the key completed.
  for (int c = 0; c < copies; ++c) {
    for (int i = 0; i < count; ++i) {
      idem::Envelope e;
      e.event_id = name + "-" + std::to_string(i);
      e.event_type = "bench";
      e.payload = R"({"amount":1234,"currency":"EUR"})";
      const std::string json = e.to_json();
      if (js_PublishAsync(js, subject.c_str(), json.data(), static_cast<int>(json.size()), nullptr) != NATS_OK) {
        std::cerr << "publish failed\n";
        std::exit(1);
      }
    }
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = 60'000;
  if (js_PublishAsyncComplete(js, &wait) != NATS_OK) {
    std::cerr << "publish did not complete\n";
    std::exit(1);
  }
  return name;
}

void Bare(benchmark::State& state) {
  const int count = message_count();
  auto& s = servers();
  for (auto _ : state) {
    state.PauseTiming();
    const std::string stream = fill_stream(count, 1);
    jsCtx* js = s.conn->impl().js;
    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.Durable = "bare";
    config.AckPolicy = js_AckExplicit;
    jsConsumerInfo* info = nullptr;
    if (js_AddConsumer(&info, js, stream.c_str(), &config, nullptr, nullptr) != NATS_OK) {
      state.SkipWithError("cannot create the consumer");
      return;
    }
    jsConsumerInfo_Destroy(info);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Consumer = "bare";
    so.ManualAck = true;
    natsSubscription* sub = nullptr;
    if (js_PullSubscribe(&sub, js, "", "bare", nullptr, &so, nullptr) != NATS_OK) {
      state.SkipWithError("cannot subscribe");
      return;
    }
    state.ResumeTiming();
    int acked = 0;
    while (acked < count) {
      natsMsgList list{nullptr, 0};
      natsSubscription_Fetch(&list, sub, 256, 1000, nullptr);
      for (int i = 0; i < list.Count; ++i) {
        if (natsMsg_Ack(list.Msgs[i], nullptr) == NATS_OK) ++acked;
      }
      natsMsgList_Destroy(&list);
    }
    natsConnection_Flush(s.conn->impl().nc);
    state.PauseTiming();
    natsSubscription_Destroy(sub);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * count);
}
BENCHMARK(Bare)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);

enum StoreKind : int { kMemory = 0, kSqlite = 1, kRedis = 2 };

std::shared_ptr<idem::Store> make_store(StoreKind kind, int iteration) {
  auto& s = servers();
  switch (kind) {
    case kMemory: return idem::MemoryStore::create();
    case kSqlite:
      return idem::open_store("sqlite://" + s.dir->file("bench-" + std::to_string(iteration) + ".db")).value();
    case kRedis:
      if (!s.redis) return nullptr;
      return idem::open_store(s.redis->url() + "/0").value();
  }
  return nullptr;
}

void Idem(benchmark::State& state) {
  const auto kind = static_cast<StoreKind>(state.range(0));
  const int copies = static_cast<int>(state.range(1));
  const int count = message_count();
  const int total = count * copies;
  static std::atomic<int> iteration{0};
  auto& s = servers();
  std::uint64_t handler_runs = 0;
  std::uint64_t in_progress_naks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string stream = fill_stream(count, copies);
    auto store = make_store(kind, ++iteration);
    if (!store) {
      state.SkipWithError("store not available");
      return;
    }
    auto checker = std::make_shared<idem::IdempotencyChecker>(store, idem::CheckerOptions{.lease = 30s});
    idem::nats::ConsumerOptions options;
    options.stream = stream;
    options.durable = "idem";
    options.concurrency = 4;
    options.max_in_flight = 256;
    options.fetch_batch = 128;
    state.ResumeTiming();
    auto consumer = idem::nats::Consumer::start(s.conn, checker, options,
                                                [](idem::nats::MessageContext&) { return std::string("{}"); });
    if (!consumer) {
      state.SkipWithError(consumer.error().to_string().c_str());
      return;
    }
    while (true) {
      const auto st = (*consumer)->stats();
      if (st.count(idem::nats::MessageOutcome::kAcked) + st.count(idem::nats::MessageOutcome::kAckedDuplicate) >=
          static_cast<std::uint64_t>(total)) {
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    state.PauseTiming();
    (*consumer)->stop();
    const auto st = (*consumer)->stats();
    handler_runs += st.handler_runs;
    in_progress_naks += st.count(idem::nats::MessageOutcome::kNakInProgress);
    consumer->reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * total);
  state.counters["handler_runs"] = static_cast<double>(handler_runs) / static_cast<double>(state.iterations());
  state.counters["in_progress_naks"] = static_cast<double>(in_progress_naks) / static_cast<double>(state.iterations());
}
BENCHMARK(Idem)
    ->ArgNames({"store", "copies"})
    ->Args({kMemory, 1})
    ->Args({kSqlite, 1})
    ->Args({kRedis, 1})
    ->Args({kSqlite, 3})
    ->Args({kRedis, 3})
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
