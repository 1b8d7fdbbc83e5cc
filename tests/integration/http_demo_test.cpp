// The real `idem webhook-demo` binary (path compiled in) on loopback, driven by
// cpp-httplib clients and, in one smoke test, by curl: the payments service of
// the issue, concurrency, TTL expiry, and a redis-server killed and restarted
// under load.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "idem/core/store.h"
#include "support/server_process.h"
#ifdef IDEM_TEST_REDIS
#include "integration/redis_support.h"
#endif

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

// --- The demo process ----------------------------------------------------------

class Demo {
 public:
  // start() lets the demo pick its own port (--listen 127.0.0.1:0) and reads
  // it from the demo's "listening on" line. A port chosen here and passed in
  // could be taken by any other process in between (parallel ctest: another
  // server, or an outgoing connection's ephemeral port), and then the
  // readiness probe might even connect to that other process.
  static std::unique_ptr<Demo> start(const std::string& store_url, std::vector<std::string> extra, std::string* error) {
    std::unique_ptr<Demo> demo(new Demo());
    idem::test::ServerSpec spec;
    spec.binary = IDEM_CLI_PATH;
    spec.name = "webhook-demo";
    spec.work_dir = demo->dir_.path();
    const std::string log = spec.work_dir + "/" + spec.name + ".log";
    Demo* d = demo.get();
    spec.ready = [d, log] {
      d->port_ = listening_port(log);
      return d->port_ > 0;
    };
    spec.args = {"webhook-demo", "--listen", "127.0.0.1:0", "--store", store_url};
    spec.args.insert(spec.args.end(), extra.begin(), extra.end());
    demo->process_ = idem::test::ServerProcess::start(std::move(spec), error);
    if (!demo->process_) return nullptr;
    return demo;
  }

  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(30, 0);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    return c;
  }
  int port() const { return port_; }
  std::string log() const { return process_->log_tail(1 << 20); }

  Json stats() const {
    auto r = client()->Get("/stats");
    EXPECT_TRUE(r && r->status == 200);
    return r ? Json::parse(r->body) : Json();
  }

 private:
  Demo() = default;

  // The port of "idem webhook-demo: listening on http://127.0.0.1:PORT" in
  // the log, 0 until the demo printed it (after it bound and listened).
  static int listening_port(const std::string& log) {
    std::ifstream in(log);
    const std::string marker = "listening on http://127.0.0.1:";
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find(marker);
      if (at != std::string::npos) return std::atoi(line.c_str() + at + marker.size());
    }
    return 0;
  }

  idem::test::TempDir dir_{"webhook-demo"};
  int port_ = 0;
  std::unique_ptr<idem::test::ServerProcess> process_;
};

httplib::Result pay(httplib::Client& client, const std::string& key, const std::string& body) {
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Idempotency-Key", key);
  return client.Post("/payments", headers, body, "application/json");
}

std::string problem_type(const httplib::Result& r) {
  if (!r || r->get_header_value("Content-Type") != "application/problem+json") return "(not a problem)";
  const Json doc = Json::parse(r->body, nullptr, false);
  return doc.is_object() ? doc.value("type", "") : "(bad json)";
}

class WebhookDemo : public ::testing::Test {
 protected:
  std::unique_ptr<Demo> start(const std::string& store_url, std::vector<std::string> extra = {}) {
    std::string error;
    auto demo = Demo::start(store_url, std::move(extra), &error);
    EXPECT_TRUE(demo) << error;
    return demo;
  }
  std::string sqlite_url() { return "sqlite://" + dir_.file("idem.db"); }
  idem::test::TempDir dir_{"webhook-demo-store"};
};

// --- The service ---------------------------------------------------------------------

TEST_F(WebhookDemo, CurlSmoke) {
  const std::string curl = idem::test::find_binary("curl", "IDEM_CURL");
  if (curl.empty()) IDEM_SKIP_OR_FAIL("curl not found (set IDEM_CURL)");
  auto demo = start(sqlite_url());
  ASSERT_TRUE(demo);
  const std::string url = "http://127.0.0.1:" + std::to_string(demo->port()) + "/payments";
  auto run_curl = [&] {
    std::string out;
    const int rc =
        idem::test::run_command({curl, "-sS", "-i", "-X", "POST", url, "-H", "Idempotency-Key: smoke-1", "-H",
                                 "Content-Type: application/json", "--data", R"({"amount": 1250, "currency": "EUR"})"},
                                &out, 10s);
    EXPECT_EQ(rc, 0) << out;
    return out;
  };
  const std::string first = run_curl();
  const std::string second = run_curl();
  EXPECT_EQ(first.rfind("HTTP/1.1 201", 0), 0u) << first;
  EXPECT_NE(first.find("Location: /payments/pay_"), std::string::npos) << first;
  EXPECT_EQ(first.find("Idempotent-Replayed"), std::string::npos) << first;
  EXPECT_EQ(second.rfind("HTTP/1.1 201", 0), 0u) << second;
  EXPECT_NE(second.find("Idempotent-Replayed: true"), std::string::npos) << second;
  auto body = [](const std::string& response) { return response.substr(response.find("\r\n\r\n") + 4); };
  EXPECT_EQ(body(first), body(second));
  EXPECT_EQ(Json::parse(body(first)).value("amount", 0), 1250);
  EXPECT_EQ(demo->stats()["payments_created"], 1);
  const std::string log = demo->log();
  EXPECT_NE(log.find(R"(method=POST path="/payments" key="smoke-1" status=201 replayed=false)"), std::string::npos)
      << log;
  EXPECT_NE(log.find(R"(method=POST path="/payments" key="smoke-1" status=201 replayed=true)"), std::string::npos)
      << log;
}

TEST_F(WebhookDemo, PaymentsRules) {
  auto demo = start(sqlite_url());
  ASSERT_TRUE(demo);
  auto client = demo->client();
  const std::string base = "tag:idem.dev,2025:problem:";

  auto missing = pay(*client, "", R"({"amount":1,"currency":"EUR"})");
  EXPECT_EQ(missing->status, 400);
  EXPECT_EQ(problem_type(missing), base + "idempotency-key-missing");

  // Invalid input is rejected before anything is stored: the key stays usable.
  for (const std::string bad :
       {"{not json", "[]", R"({"amount":0,"currency":"EUR"})", R"({"amount":1.5,"currency":"EUR"})",
        R"({"amount":"1","currency":"EUR"})", R"({"amount":1,"currency":"eur"})", R"({"amount":1,"currency":"EURO"})",
        R"({"amount":1})", R"({"amount":1,"currency":"EUR","simulate":"other"})",
        R"({"amount":1,"currency":"EUR","extra":true})"}) {
    auto r = pay(*client, "k-valid-later", bad);
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_EQ(problem_type(r), base + "invalid-request") << bad;
  }
  auto created = pay(*client, "k-valid-later", R"({"amount":1250,"currency":"EUR"})");
  ASSERT_EQ(created->status, 201) << created->body;
  const Json payment = Json::parse(created->body);
  EXPECT_EQ(payment["amount"], 1250);
  EXPECT_EQ(payment["currency"], "EUR");
  EXPECT_EQ(created->get_header_value("Location"), "/payments/" + payment["id"].get<std::string>());
  EXPECT_EQ(client->Get(created->get_header_value("Location"))->body, created->body);

  auto mismatch = pay(*client, "k-valid-later", R"({"amount":1251,"currency":"EUR"})");
  EXPECT_EQ(mismatch->status, 422);
  EXPECT_EQ(problem_type(mismatch), base + "idempotency-key-mismatch");

  // The simulated outage: 503 (not stored), then the retry creates it.
  const std::string flaky = R"({"amount":7,"currency":"USD","simulate":"unavailable_once"})";
  auto down = pay(*client, "k-flaky", flaky);
  EXPECT_EQ(down->status, 503);
  EXPECT_FALSE(down->has_header("Idempotent-Replayed"));
  auto up = pay(*client, "k-flaky", flaky);
  EXPECT_EQ(up->status, 201);
  EXPECT_FALSE(up->has_header("Idempotent-Replayed"));
  auto again = pay(*client, "k-flaky", flaky);
  EXPECT_EQ(again->body, up->body);
  EXPECT_EQ(again->get_header_value("Idempotent-Replayed"), "true");

  const Json stats = demo->stats();
  EXPECT_EQ(stats["payments_created"], 2);
  EXPECT_EQ(stats["handler_executions"], 3);
  auto metrics = client->Get("/metrics");
  EXPECT_NE(metrics->body.find(R"(idem_http_requests_total{route="POST /payments",outcome="rejected"} 10)"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("idem_completions_total"), std::string::npos);
}

TEST_F(WebhookDemo, TenConcurrentRequestsOneKey) {
  // Every request must arrive while the first one runs: 2 s, not 500 ms, so
  // that a loaded machine (parallel ctest) cannot make a client late enough
  // to get the replay instead of a 409.
  auto demo = start(sqlite_url(), {"--handler-delay-ms", "2000"});
  ASSERT_TRUE(demo);
  constexpr int kClients = 10;
  std::barrier sync(kClients);
  std::mutex mutex;
  std::map<int, int> statuses;
  int retry_after = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      auto client = demo->client();
      sync.arrive_and_wait();
      auto r = pay(*client, "one-key", R"({"amount":100,"currency":"EUR"})");
      std::lock_guard lock(mutex);
      ASSERT_TRUE(r);
      ++statuses[r->status];
      if (r->status == 409 && !r->get_header_value("Retry-After").empty()) ++retry_after;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(statuses[201], 1);
  EXPECT_EQ(statuses[409], kClients - 1);
  EXPECT_EQ(retry_after, kClients - 1);
  EXPECT_EQ(demo->stats()["handler_executions"], 1);
}

// Each of 64 clients sends every one of 200 keys until it gets its 201, in its
// own random order, with the payload's fields in a random order too; 409 and
// transport errors are retried with the same key, as a real client would.
// Exactly 200 payments, and every client sees the same body for a key.
void sixty_four_clients_two_hundred_keys(const Demo& demo) {
  constexpr int kClients = 64;
  constexpr int kKeys = 200;
  std::vector<std::map<int, std::string>> seen(kClients);
  std::atomic<int> unexpected{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> transport_retries{0};
  std::barrier sync(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 random(static_cast<unsigned>(c) * 7919U + 1U);
      std::vector<int> keys(kKeys);
      for (int k = 0; k < kKeys; ++k) keys[static_cast<std::size_t>(k)] = k;
      std::shuffle(keys.begin(), keys.end(), random);
      auto client = demo.client();
      sync.arrive_and_wait();
      for (const int k : keys) {
        std::vector<std::string> fields = {R"("amount":)" + std::to_string(100 + k), R"("currency":"EUR")"};
        std::shuffle(fields.begin(), fields.end(), random);
        const std::string body = "{" + fields[0] + ", " + fields[1] + "}";
        for (int attempt = 0;; ++attempt) {
          auto r = pay(*client, "key-" + std::to_string(k), body);
          if (r && r->status == 201) {
            seen[static_cast<std::size_t>(c)][k] = r->body;
            break;
          }
          if (!r && attempt < 2000) {
            transport_retries.fetch_add(1);
            continue;
          }
          if (r && r->status == 409 && attempt < 2000) {
            conflicts.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::milliseconds(2 + random() % 5));
            continue;
          }
          unexpected.fetch_add(1);
          ADD_FAILURE() << "key " << k << ": "
                        << (r ? std::to_string(r->status) + " " + r->body
                              : "no response: " + httplib::to_string(r.error()));
          break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(demo.stats()["payments_created"], kKeys);
  EXPECT_EQ(demo.stats()["handler_executions"], kKeys);
  std::set<std::string> ids;
  for (int k = 0; k < kKeys; ++k) {
    const std::string& body = seen[0][k];
    for (int c = 1; c < kClients; ++c) {
      EXPECT_EQ(seen[static_cast<std::size_t>(c)][k], body) << "client " << c << " key " << k;
    }
    ids.insert(Json::parse(body).value("id", ""));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kKeys));
  std::printf("[ info ] 64 clients x 200 keys: %d conflicts (409) and %d transport errors retried\n", conflicts.load(),
              transport_retries.load());
}

TEST_F(WebhookDemo, SixtyFourClientsTwoHundredKeysOnSqlite) {
  auto demo = start(sqlite_url());
  ASSERT_TRUE(demo);
  sixty_four_clients_two_hundred_keys(*demo);
}

TEST_F(WebhookDemo, SixtyFourClientsTwoHundredKeysOnMemory) {
  auto demo = start("memory://");
  ASSERT_TRUE(demo);
  sixty_four_clients_two_hundred_keys(*demo);
}

// Any other store URL, for a manual run (PostgreSQL, Redis Cluster, ...):
//   IDEM_HTTP_TEST_STORE=redis+cluster://... http_demo_test --gtest_filter='*OnStoreFromEnvironment'
TEST_F(WebhookDemo, SixtyFourClientsTwoHundredKeysOnStoreFromEnvironment) {
  const char* url = std::getenv("IDEM_HTTP_TEST_STORE");
  if (url == nullptr || *url == '\0') GTEST_SKIP() << "IDEM_HTTP_TEST_STORE is not set";
  auto demo = start(url);
  ASSERT_TRUE(demo);
  sixty_four_clients_two_hundred_keys(*demo);
}

TEST_F(WebhookDemo, ResponsesExpireWithTheTtl) {
  auto demo = start(sqlite_url(), {"--ttl", "500ms"});
  ASSERT_TRUE(demo);
  auto client = demo->client();
  const std::string body = R"({"amount":9,"currency":"GBP"})";
  // The replay must come within the TTL: on a loaded machine (parallel
  // ctest) two requests can take longer than that, and then the key has
  // legitimately expired. Such a round does not count; try a new key.
  int payments = 0;
  for (int round = 0;; ++round) {
    ASSERT_LT(round, 5) << "two requests never fitted into the 500 ms TTL";
    const std::string key = "ttl-key-" + std::to_string(round);
    const auto sent = std::chrono::steady_clock::now();
    auto first = pay(*client, key, body);
    auto replay = pay(*client, key, body);
    ASSERT_TRUE(first && replay);
    ASSERT_EQ(first->status, 201);
    ++payments;
    if (std::chrono::steady_clock::now() - sent >= 450ms) {
      if (!replay->has_header("Idempotent-Replayed")) ++payments;
      continue;
    }
    EXPECT_EQ(replay->get_header_value("Idempotent-Replayed"), "true");
    EXPECT_EQ(replay->body, first->body);
    std::this_thread::sleep_for(700ms);
    auto after = pay(*client, key, body);
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 201);
    EXPECT_FALSE(after->has_header("Idempotent-Replayed"));
    EXPECT_NE(after->body, first->body);
    ++payments;
    break;
  }
  EXPECT_EQ(demo->stats()["payments_created"], payments);
}

// --- Redis killed mid-run ----------------------------------------------------------

#ifdef IDEM_TEST_REDIS
TEST_F(WebhookDemo, SixtyFourClientsTwoHundredKeysOnRedis) {
  if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string error;
  auto redis = idem::test::RedisServer::start({}, &error);
  ASSERT_TRUE(redis) << error;
  auto demo = start(redis->url());
  ASSERT_TRUE(demo);
  sixty_four_clients_two_hundred_keys(*demo);
}

TEST_F(WebhookDemo, RedisKilledMidRunFailsClosedAndRecovers) {
  if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string error;
  // appendfsync always: a claim Redis acknowledged survives the kill, so
  // "every executed key has a record" can be checked after the restart.
  auto redis = idem::test::RedisServer::start({"--appendonly", "yes", "--appendfsync", "always"}, &error);
  ASSERT_TRUE(redis) << error;
  auto demo = start(redis->url() + "?command_timeout_ms=300&connect_timeout_ms=300");
  ASSERT_TRUE(demo);

  std::mutex mutex;
  std::vector<std::string> executed;  // keys whose first answer was a fresh 201
  std::vector<std::string> refused;   // keys answered 503 store-unavailable
  std::atomic<int> other{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      auto client = demo->client();
      client->set_read_timeout(10, 0);
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = "crash-" + std::to_string(t) + "-" + std::to_string(i);
        auto r = pay(*client, key, R"({"amount":1,"currency":"EUR"})");
        std::lock_guard lock(mutex);
        if (r && r->status == 201 && !r->has_header("Idempotent-Replayed")) {
          executed.push_back(key);
        } else if (r && r->status == 503 && problem_type(r) == "tag:idem.dev,2025:problem:store-unavailable" &&
                   r->has_header("Retry-After")) {
          refused.push_back(key);
          std::this_thread::sleep_for(5ms);  // a client backs off (Retry-After, shortened)
        } else {
          other.fetch_add(1);
          ADD_FAILURE() << key << ": " << (r ? std::to_string(r->status) + " " + r->body : "no response");
        }
      }
    });
  }
  std::this_thread::sleep_for(400ms);
  redis->process().kill();
  std::this_thread::sleep_for(800ms);
  ASSERT_TRUE(redis->process().restart(&error)) << error;
  std::this_thread::sleep_for(400ms);
  stop.store(true);
  for (auto& t : threads) t.join();

  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.size(), 0u) << "requests during the outage must be answered 503";
  ASSERT_GT(executed.size(), 0u);
  // No execution without a claim: every execution answered a fresh 201 (the
  // 503s ran nothing), and every executed key has its record in Redis.
  EXPECT_EQ(demo->stats()["handler_executions"].get<std::size_t>(), executed.size());
  auto store = idem::open_store(redis->url()).value();
  for (const std::string& key : executed) {
    auto record = store->get("idempotency:events:http:" + key);
    ASSERT_TRUE(record.ok()) << record.error().to_string();
    EXPECT_TRUE(record->has_value()) << key << " ran without a claim in Redis";
  }
  // Recovery: refused keys are served now (the circuit breaker may take a
  // moment to close). A claim that reached Redis just before the kill holds
  // its lease: 409 is then the right answer, not 503. A sample suffices.
  auto client = demo->client();
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  int served = 0;
  const std::size_t step = std::max<std::size_t>(1, refused.size() / 100);
  for (std::size_t i = 0; i < refused.size(); i += step) {
    const std::string& key = refused[i];
    for (;;) {
      auto r = pay(*client, key, R"({"amount":1,"currency":"EUR"})");
      ASSERT_TRUE(r);
      if (r->status == 201 || r->status == 409) {
        served += r->status == 201 ? 1 : 0;
        break;
      }
      ASSERT_EQ(r->status, 503) << r->body;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the service did not recover after Redis restarted";
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_GT(served, 0);
  auto fresh = pay(*client, "after-restart", R"({"amount":1,"currency":"EUR"})");
  EXPECT_EQ(fresh->status, 201);
}
#endif

}  // namespace
