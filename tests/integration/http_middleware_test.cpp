// The Idempotency-Key middleware on a real cpp-httplib server on loopback,
// driven by cpp-httplib's client, against every store: memory, SQLite, and a
// redis-server and a PostgreSQL the test starts (every rule of the middleware
// runs on each). Redis also gets the fail-open policy with the server killed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <barrier>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "idem/core/metrics.h"
#include "idem/core/tracing.h"
#include "idem/integrations/http.h"
#include "support/recording_tracer.h"
#include "support/server_process.h"
#include "unit/prometheus_checker.h"
#ifdef IDEM_TEST_REDIS
#include "integration/redis_support.h"
#endif
#ifdef IDEM_TEST_POSTGRES
#include "support/postgres_server.h"
#endif

namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using idem::http::IdempotencyMiddleware;
using idem::http::RequestOutcome;

// --- The server under test -------------------------------------------------------

// Debian's cpp-httplib 0.11 listens with a backlog of 5: ten clients
// connecting at once would overflow it and some would be reset. listen() on
// a listening socket only changes the backlog.
class BigBacklogServer : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_.load(), SOMAXCONN); }
};

class TestServer {
 public:
  TestServer() {
    server_.new_task_queue = [] { return new httplib::ThreadPool(16); };
  }
  ~TestServer() { stop(); }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  httplib::Server& server() { return server_; }

  void start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    server_.raise_backlog();
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  void stop() {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(30, 0);
    return c;
  }

 private:
  BigBacklogServer server_;
  std::thread thread_;
  int port_ = 0;
};

using idem::test::RecordingTracer;

// --- Stores -------------------------------------------------------------------------

class StoreFactory {
 public:
  virtual ~StoreFactory() = default;
  virtual std::shared_ptr<idem::Store> open() = 0;
};

#ifdef IDEM_TEST_REDIS
// One redis-server for the whole binary: each test uses its own key prefix.
idem::test::RedisServer* shared_redis(std::string* error) {
  static std::unique_ptr<idem::test::RedisServer> server;
  static std::string start_error;
  static std::once_flag once;
  std::call_once(once, [] { server = idem::test::RedisServer::start({}, &start_error); });
  if (!server) *error = start_error;
  return server.get();
}
#endif

#ifdef IDEM_TEST_POSTGRES
// One PostgreSQL for the whole binary (initdb takes a second): each test uses
// its own key prefix, all in one schema.
idem::test::PostgresServer* shared_postgres(std::string* error) {
  static std::unique_ptr<idem::test::PostgresServer> server;
  static std::string start_error;
  static std::once_flag once;
  std::call_once(once, [] { server = idem::test::PostgresServer::start({}, &start_error); });
  if (!server) *error = start_error;
  return server.get();
}
#endif

std::shared_ptr<idem::Store> open_store(const std::string& kind, idem::test::TempDir& dir, std::string* skip) {
  std::string url;
  if (kind == "memory") {
    url = "memory://";
  } else if (kind == "sqlite") {
    url = "sqlite://" + dir.file("idem.db");
  } else if (kind == "redis") {
#ifdef IDEM_TEST_REDIS
    if (idem::test::redis_server_binary().empty()) {
      *skip = "redis-server not found (set IDEM_REDIS_SERVER)";
      return nullptr;
    }
    std::string error;
    auto* server = shared_redis(&error);
    if (server == nullptr) {
      *skip = "redis-server did not start: " + error;
      return nullptr;
    }
    url = server->url() + "?command_timeout_ms=2000";
#else
    *skip = "the Redis store is not built";
    return nullptr;
#endif
  } else if (kind == "postgres") {
#ifdef IDEM_TEST_POSTGRES
    if (!idem::test::postgres_available()) {
      *skip = "PostgreSQL 15 not found (install postgresql-15 or set IDEM_PG_BINDIR)";
      return nullptr;
    }
    std::string error;
    auto* server = shared_postgres(&error);
    if (server == nullptr) {
      *skip = "PostgreSQL did not start: " + error;
      return nullptr;
    }
    url = server->url("schema=http&command_timeout_ms=2000");
#else
    *skip = "the PostgreSQL store is not built";
    return nullptr;
#endif
  }
  auto store = idem::open_store(url);
  EXPECT_TRUE(store.ok()) << store.error().to_string();
  return store.ok() ? *store : nullptr;
}

// --- The fixture ------------------------------------------------------------------

class HttpMiddleware : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string skip;
    store_ = open_store(GetParam(), dir_, &skip);
    if (!skip.empty()) {
      if (skip.find("not built") != std::string::npos) GTEST_SKIP() << skip;
      IDEM_SKIP_OR_FAIL(skip);
    }
    ASSERT_TRUE(store_);
  }

  // A unique prefix per test keeps tests apart in the shared Redis.
  idem::CheckerOptions checker_options() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    idem::CheckerOptions options;
    options.key.prefix = std::string("t:") + info->name() + ":";
    options.observer = observer_;
    return options;
  }

  IdempotencyMiddleware& middleware(idem::http::MiddlewareOptions options = {},
                                    std::optional<idem::CheckerOptions> checker = std::nullopt) {
    auto c = std::make_shared<idem::IdempotencyChecker>(store_, checker ? *checker : checker_options());
    middleware_ = std::make_unique<IdempotencyMiddleware>(c, std::move(options));
    return *middleware_;
  }

  // Registers POST /payments: 201 with a Location, and a body naming the
  // execution, so that a replay is told apart from a second execution.
  void add_payments(idem::http::RouteOptions route = {}) {
    middleware_->Post(
        server_.server(), "/payments",
        [this](const httplib::Request&, httplib::Response& res) {
          const int n = ++executions_;
          if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
          res.status = 201;
          res.set_header("Location", "/payments/p" + std::to_string(n));
          res.set_header("X-Cost", "42");
          res.set_header("X-Not-Replayed", "x");
          res.set_content(R"({"id":"p)" + std::to_string(n) + R"("})", "application/json");
        },
        std::move(route));
  }

  httplib::Result post(const std::string& path, const std::string& key, const std::string& body,
                       const std::string& content_type = "application/json") {
    httplib::Headers headers;
    if (!key.empty()) headers.emplace("Idempotency-Key", key);
    return client_->Post(path.c_str(), headers, body, content_type.c_str());
  }

  void start() {
    server_.start();
    client_ = server_.client();
  }

  static Json problem(const httplib::Result& r, int status, std::string_view type) {
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/problem+json");
    Json doc = Json::parse(r->body, nullptr, false);
    EXPECT_TRUE(doc.is_object()) << r->body;
    if (!doc.is_object()) return {};
    EXPECT_EQ(doc.value("type", ""), "tag:idem.dev,2025:problem:" + std::string(type)) << r->body;
    EXPECT_EQ(doc.value("status", 0), status);
    EXPECT_FALSE(doc.value("title", "").empty());
    EXPECT_FALSE(doc.value("detail", "").empty());
    EXPECT_FALSE(r->has_header("Idempotent-Replayed"));
    return doc;
  }

  idem::test::TempDir dir_{"http"};
  std::shared_ptr<idem::Store> store_;
  std::shared_ptr<idem::Observer> observer_;
  std::unique_ptr<IdempotencyMiddleware> middleware_;
  TestServer server_;
  std::unique_ptr<httplib::Client> client_;
  std::atomic<int> executions_{0};
  std::chrono::milliseconds delay_{0};
};

// --- Rules -------------------------------------------------------------------------------

TEST_P(HttpMiddleware, MissingEmptyLongOrRepeatedKeyIs400AndRunsNothing) {
  middleware();
  add_payments();
  start();
  auto doc = problem(post("/payments", "", "{}"), 400, "idempotency-key-missing");
  EXPECT_NE(doc.value("detail", "").find("Idempotency-Key"), std::string::npos);
  problem(post("/payments", "\"\"", "{}"), 400, "idempotency-key-invalid");
  problem(post("/payments", std::string(256, 'k'), "{}"), 400, "idempotency-key-invalid");
  problem(post("/payments", "\"unterminated", "{}"), 400, "idempotency-key-invalid");
  auto two = client_->Post("/payments", httplib::Headers{{"Idempotency-Key", "a"}, {"Idempotency-Key", "b"}}, "{}",
                           "application/json");
  problem(two, 400, "idempotency-key-invalid");
  EXPECT_EQ(executions_.load(), 0);
  EXPECT_EQ(middleware_->count(RequestOutcome::kKeyMissing), 1u);
  EXPECT_EQ(middleware_->count(RequestOutcome::kKeyInvalid), 4u);
  // 255 bytes is the limit, inclusive.
  EXPECT_EQ(post("/payments", std::string(255, 'k'), "{}")->status, 201);
}

TEST_P(HttpMiddleware, FirstResponseThenExactReplayWithSelectedHeaders) {
  middleware({.replayed_headers = {"x-cost"}});
  add_payments();
  start();
  auto first = post("/payments", "k1", R"({"amount":1,"currency":"EUR"})");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 201);
  EXPECT_FALSE(first->has_header("Idempotent-Replayed")) << "the first response must not carry it";
  EXPECT_EQ(first->get_header_value("X-Not-Replayed"), "x");

  // Same key, same request (quoted form, fields in another order).
  auto again = post("/payments", "\"k1\"", R"({ "currency": "EUR", "amount": 1 })");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 201);
  EXPECT_EQ(again->body, first->body);
  EXPECT_EQ(again->get_header_value("Location"), first->get_header_value("Location"));
  EXPECT_EQ(again->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(again->get_header_value("X-Cost"), "42");
  EXPECT_FALSE(again->has_header("X-Not-Replayed")) << "only the headers that matter are replayed";
  EXPECT_EQ(again->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(executions_.load(), 1);
  EXPECT_EQ(middleware_->count(RequestOutcome::kExecuted, "POST /payments"), 1u);
  EXPECT_EQ(middleware_->count(RequestOutcome::kReplayed, "POST /payments"), 1u);
}

TEST_P(HttpMiddleware, BinaryBodiesAndClientErrorsAreReplayedExactly) {
  middleware();
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(255 - i));
  std::atomic<int> runs{0};
  middleware_->Post(server_.server(), "/blob", [&](const httplib::Request& req, httplib::Response& res) {
    ++runs;
    if (req.body == "declined") {
      res.status = 402;
      res.set_content("card declined", "text/plain");
      return;
    }
    res.set_content(binary, "application/octet-stream");
  });
  start();
  auto a = post("/blob", "bin", "x", "text/plain");
  auto b = post("/blob", "bin", "x", "text/plain");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 200) << "a handler that sets no status answers 200";
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(a->body, binary);
  EXPECT_EQ(b->body, binary);
  EXPECT_EQ(b->get_header_value("Idempotent-Replayed"), "true");
  // A 4xx from the handler is the request's answer: stored and replayed.
  auto c = post("/blob", "declined", "declined", "text/plain");
  auto d = post("/blob", "declined", "declined", "text/plain");
  ASSERT_TRUE(c && d);
  EXPECT_EQ(c->status, 402);
  EXPECT_EQ(d->status, 402);
  EXPECT_EQ(d->body, "card declined");
  EXPECT_EQ(d->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(runs.load(), 2);
}

TEST_P(HttpMiddleware, SameKeyForAnotherRequestIs422) {
  middleware();
  add_payments();
  server_.server().Post("/other", middleware_->wrap([](const httplib::Request&, httplib::Response& res) {
    res.set_content("other", "text/plain");
  }));
  start();
  ASSERT_EQ(post("/payments", "k", R"({"amount":1})")->status, 201);
  problem(post("/payments", "k", R"({"amount":2})"), 422, "idempotency-key-mismatch");
  problem(post("/other", "k", R"({"amount":1})"), 422, "idempotency-key-mismatch");
  problem(post("/payments", "k", R"({"amount":1})", "text/plain"), 422, "idempotency-key-mismatch");
  EXPECT_EQ(executions_.load(), 1);
  EXPECT_EQ(middleware_->count(RequestOutcome::kMismatch), 3u);
  // And the original is still replayed.
  EXPECT_EQ(post("/payments", "k", R"({"amount":1})")->get_header_value("Idempotent-Replayed"), "true");
}

TEST_P(HttpMiddleware, IgnoredFieldsMayChangeBetweenRetries) {
  middleware();
  add_payments({.fingerprint = {.ignore_json_fields = {"/sent_at"}}});
  start();
  ASSERT_EQ(post("/payments", "k", R"({"amount":1,"sent_at":"10:00"})")->status, 201);
  auto retry = post("/payments", "k", R"({"amount":1,"sent_at":"10:05"})");
  EXPECT_EQ(retry->get_header_value("Idempotent-Replayed"), "true");
  problem(post("/payments", "k", R"({"amount":2,"sent_at":"10:05"})"), 422, "idempotency-key-mismatch");
  EXPECT_EQ(executions_.load(), 1);
}

TEST_P(HttpMiddleware, ServerErrorsAndThrowingHandlersAreNotStored) {
  middleware();
  std::atomic<int> runs{0};
  middleware_->Post(server_.server(), "/flaky", [&](const httplib::Request&, httplib::Response& res) {
    const int n = ++runs;
    if (n == 1) {
      res.status = 503;
      res.set_content("try later", "text/plain");
      return;
    }
    if (n == 2) throw std::runtime_error("secret internal detail");
    res.status = 201;
    res.set_content("created on run " + std::to_string(n), "text/plain");
  });
  start();
  auto first = post("/flaky", "k", "{}");
  EXPECT_EQ(first->status, 503);
  EXPECT_EQ(first->body, "try later") << "a 5xx from the handler goes out as it is";
  auto second = post("/flaky", "k", "{}");
  auto doc = problem(second, 500, "handler-error");
  EXPECT_EQ(second->body.find("secret"), std::string::npos) << "exception text must not leak";
  auto third = post("/flaky", "k", "{}");
  EXPECT_EQ(third->status, 201);
  EXPECT_EQ(third->body, "created on run 3");
  EXPECT_FALSE(third->has_header("Idempotent-Replayed"));
  auto fourth = post("/flaky", "k", "{}");
  EXPECT_EQ(fourth->body, "created on run 3");
  EXPECT_EQ(fourth->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(middleware_->count(RequestOutcome::kNotStored), 1u);
  EXPECT_EQ(middleware_->count(RequestOutcome::kHandlerThrew), 1u);
}

TEST_P(HttpMiddleware, RejectedBeforeTheHandlerLeavesTheKeyUsable) {
  middleware();
  add_payments({.validate = [](const httplib::Request& req) -> std::optional<idem::http::Problem> {
    if (!Json::accept(req.body)) return idem::http::invalid_request("the body is not valid JSON");
    return std::nullopt;
  }});
  start();
  auto rejected = post("/payments", "k", "{not json");
  auto doc = problem(rejected, 400, "invalid-request");
  EXPECT_EQ(doc.value("detail", ""), "the body is not valid JSON");
  // Fixed request, same key: runs (no 422, no replay of the 400).
  auto fixed = post("/payments", "k", R"({"amount":1})");
  EXPECT_EQ(fixed->status, 201);
  EXPECT_FALSE(fixed->has_header("Idempotent-Replayed"));
  EXPECT_EQ(executions_.load(), 1);
  // The store key: the checker's prefix, the middleware's scope, the key.
  auto scoped = store_->get(checker_options().key.prefix + "http:k");
  ASSERT_TRUE(scoped.ok());
  ASSERT_TRUE(scoped->has_value());
  EXPECT_EQ((*scoped)->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ((*scoped)->attempt, 1u) << "the rejected request must not have claimed the key";
}

TEST_P(HttpMiddleware, InProgressIs409WithRetryAfterOrWaitsAndReplays) {
  middleware({.retry_after = 2500ms});
  delay_ = 600ms;
  add_payments();
  start();
  std::thread slow([&] {
    auto c = server_.client();
    auto r = c->Post("/payments", httplib::Headers{{"Idempotency-Key", "k"}}, "{}", "application/json");
    EXPECT_EQ(r->status, 201);
  });
  while (executions_.load() == 0) std::this_thread::sleep_for(1ms);
  auto busy = post("/payments", "k", "{}");
  problem(busy, 409, "idempotency-key-in-use");
  EXPECT_EQ(busy->get_header_value("Retry-After"), "3") << "rounded up to whole seconds";
  slow.join();
  EXPECT_EQ(executions_.load(), 1);

  // With a wait bound, the duplicate waits for the original and replays it.
  TestServer waiting;
  IdempotencyMiddleware patient(middleware_->checker(), {.wait_for_in_progress = 5s});
  std::atomic<int> runs{0};
  patient.Post(waiting.server(), "/slow", [&](const httplib::Request&, httplib::Response& res) {
    ++runs;
    std::this_thread::sleep_for(400ms);
    res.status = 201;
    res.set_content("done", "text/plain");
  });
  waiting.start();
  std::thread original([&] {
    auto c = waiting.client();
    EXPECT_EQ(c->Post("/slow", httplib::Headers{{"Idempotency-Key", "w"}}, "{}", "application/json")->status, 201);
  });
  while (runs.load() == 0) std::this_thread::sleep_for(1ms);
  auto c = waiting.client();
  auto replay = c->Post("/slow", httplib::Headers{{"Idempotency-Key", "w"}}, "{}", "application/json");
  original.join();
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->status, 201);
  EXPECT_EQ(replay->body, "done");
  EXPECT_EQ(replay->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(runs.load(), 1);
}

TEST_P(HttpMiddleware, TenConcurrentRequestsOneKeyOneExecution) {
  middleware();
  delay_ = 500ms;
  add_payments();
  start();
  constexpr int kClients = 10;
  std::barrier sync(kClients);
  std::mutex mutex;
  std::map<int, int> statuses;
  int with_retry_after = 0;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      auto c = server_.client();
      sync.arrive_and_wait();
      auto r =
          c->Post("/payments", httplib::Headers{{"Idempotency-Key", "same"}}, R"({"amount":5})", "application/json");
      std::lock_guard lock(mutex);
      ASSERT_TRUE(r);
      ++statuses[r->status];
      if (r->status == 409 && !r->get_header_value("Retry-After").empty()) ++with_retry_after;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(statuses[201], 1);
  EXPECT_EQ(statuses[409], kClients - 1);
  EXPECT_EQ(with_retry_after, kClients - 1);
  EXPECT_EQ(executions_.load(), 1);
}

TEST_P(HttpMiddleware, RecordsExpireWithTheTtl) {
  auto options = checker_options();
  options.ttl = 400ms;
  middleware({}, options);
  add_payments();
  start();
  auto first = post("/payments", "k", "{}");
  EXPECT_EQ(post("/payments", "k", "{}")->get_header_value("Idempotent-Replayed"), "true");
  std::this_thread::sleep_for(600ms);
  auto after = post("/payments", "k", "{}");
  EXPECT_EQ(after->status, 201);
  EXPECT_FALSE(after->has_header("Idempotent-Replayed"));
  EXPECT_NE(after->body, first->body) << "after the TTL the key runs again";
  EXPECT_EQ(executions_.load(), 2);
}

TEST_P(HttpMiddleware, OptionalKeysNamespacesAndCustomHeaderName) {
  middleware({.header = "X-Request-Key",
              .key_namespace = [](const httplib::Request& r) { return r.get_header_value("X-Account"); }});
  add_payments({.require_key = false});
  start();
  // No key on an optional route: runs every time, unprotected.
  EXPECT_EQ(client_->Post("/payments", "{}", "application/json")->status, 201);
  EXPECT_EQ(client_->Post("/payments", "{}", "application/json")->status, 201);
  EXPECT_EQ(executions_.load(), 2);
  EXPECT_EQ(middleware_->count(RequestOutcome::kPassThrough), 2u);
  // The same key in two accounts: two executions; within one: a replay.
  // ("a/b" + "c" and "a" + "b/c" must not meet as "a/b/c".)
  const std::vector<std::pair<std::string, std::string>> sends = {{"a/b", "c"}, {"a", "b/c"}, {"a/b", "c"}};
  for (const auto& [account, key] : sends) {
    auto r = client_->Post("/payments", httplib::Headers{{"X-Request-Key", key}, {"X-Account", account}}, "{}",
                           "application/json");
    EXPECT_EQ(r->status, 201);
  }
  EXPECT_EQ(executions_.load(), 4) << "two accounts must not share a key space";
  EXPECT_EQ(middleware_->count(RequestOutcome::kReplayed), 1u);
  // Idempotency-Key is not the configured header here.
  EXPECT_EQ(post("/payments", "k", "{}")->status, 201);
  EXPECT_EQ(executions_.load(), 5);
}

TEST_P(HttpMiddleware, RethrowHandsTheExceptionToTheServer) {
  middleware({.rethrow_handler_exceptions = true});
  std::atomic<int> runs{0};
  middleware_->Post(server_.server(), "/boom", [&](const httplib::Request&, httplib::Response& res) {
    if (++runs == 1) throw std::runtime_error("boom");
    res.set_content("ok", "text/plain");
  });
  server_.server().set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content("from the server's exception handler", "text/plain");
  });
  start();
  auto first = post("/boom", "k", "{}");
  EXPECT_EQ(first->status, 500);
  EXPECT_EQ(first->body, "from the server's exception handler");
  EXPECT_EQ(post("/boom", "k", "{}")->body, "ok") << "the key stays usable";
}

TEST_P(HttpMiddleware, MetricsAndSpans) {
  auto metrics = std::make_shared<idem::MetricsRegistry>();
  auto tracer = std::make_shared<RecordingTracer>();
  observer_ = std::make_shared<idem::CompositeObserver>(std::vector<std::shared_ptr<idem::Observer>>{
      metrics, std::make_shared<idem::TracingObserver>(tracer, idem::TracingOptions{.messaging_system = "http"})});
  middleware();
  add_payments();
  start();
  post("/payments", "k", "{}");
  post("/payments", "k", "{}");
  post("/payments", "", "{}");

  const std::string labels = "scope=\"http\",store=\"" + std::string(store_->kind()) + "\"";
  EXPECT_EQ(metrics->counter_value("idem_new_total", labels), 1u) << metrics->render();
  EXPECT_EQ(metrics->counter_value("idem_completions_total", labels), 1u);
  EXPECT_EQ(metrics->counter_value("idem_duplicates_total", labels + ",state=\"completed\""), 1u);

  auto requests = tracer->spans_named("idem.http.request");
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].attributes.at("http.request.method"), "POST");
  EXPECT_EQ(requests[0].attributes.at("http.route"), "POST /payments");
  EXPECT_EQ(requests[0].attributes.at("http.response.status_code"), "201");
  EXPECT_EQ(requests[0].attributes.at("idem.outcome"), "executed");
  EXPECT_EQ(requests[0].attributes.at("messaging.system"), "http");
  EXPECT_EQ(requests[1].attributes.at("idem.outcome"), "replayed");
  EXPECT_EQ(requests[2].attributes.at("idem.outcome"), "key_missing");
  EXPECT_EQ(requests[2].attributes.at("http.response.status_code"), "400");
  EXPECT_EQ(tracer->spans_named("idem.claim").size(), 2u);
  EXPECT_EQ(tracer->spans_named("idem.handler").size(), 1u);
  EXPECT_EQ(tracer->spans_named("idem.complete").size(), 1u);

  const std::string text = middleware_->render_metrics();
  auto check = idem::testing::check_prometheus_text(text);
  EXPECT_TRUE(check.errors.empty()) << check.describe() << text;
  EXPECT_NE(text.find("idem_http_requests_total{route=\"POST /payments\",outcome=\"replayed\"} 1\n"), std::string::npos)
      << text;
}

INSTANTIATE_TEST_SUITE_P(Stores, HttpMiddleware, ::testing::Values("memory", "sqlite", "redis", "postgres"),
                         [](const auto& param_info) { return param_info.param; });

// --- The store down: fail-closed (503) and fail-open ------------------------------

#ifdef IDEM_TEST_REDIS
TEST(HttpMiddlewareOutage, FailClosedAnswers503AndFailOpenRunsUnprotected) {
  if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string error;
  auto redis = idem::test::RedisServer::start({}, &error);
  ASSERT_TRUE(redis) << error;
  auto store = idem::open_store(redis->url() + "?command_timeout_ms=300&connect_timeout_ms=300").value();
  auto metrics = std::make_shared<idem::MetricsRegistry>();
  auto closed_checker = std::make_shared<idem::IdempotencyChecker>(store);
  auto open_checker = std::make_shared<idem::IdempotencyChecker>(
      store, idem::CheckerOptions{.outage_policy = idem::OutagePolicy::kFailOpen, .observer = metrics});
  IdempotencyMiddleware closed(closed_checker, {.retry_after = 2s});
  IdempotencyMiddleware open(open_checker);
  std::atomic<int> runs{0};
  auto handler = [&](const httplib::Request&, httplib::Response& res) {
    res.status = 201;
    res.set_content("run " + std::to_string(++runs), "text/plain");
  };
  TestServer server;
  closed.Post(server.server(), "/closed", handler);
  open.Post(server.server(), "/open", handler);
  server.start();
  auto client = server.client();
  auto send = [&](const char* path, const char* key) {
    return client->Post(path, httplib::Headers{{"Idempotency-Key", key}}, "{}", "application/json");
  };
  ASSERT_EQ(send("/closed", "before")->status, 201);
  ASSERT_EQ(runs.load(), 1);

  redis->process().kill();
  auto refused = send("/closed", "during");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "2");
  EXPECT_EQ(Json::parse(refused->body).value("type", ""), "tag:idem.dev,2025:problem:store-unavailable");
  EXPECT_EQ(runs.load(), 1) << "fail-closed: the handler must not run without a claim";
  EXPECT_EQ(closed.count(RequestOutcome::kStoreUnavailable), 1u);

  auto a = send("/open", "during");
  auto b = send("/open", "during");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 201);
  EXPECT_EQ(b->status, 201);
  EXPECT_FALSE(b->has_header("Idempotent-Replayed")) << "nothing was recorded: no replay";
  EXPECT_EQ(runs.load(), 3) << "fail-open: the handler runs unprotected";
  EXPECT_EQ(open.count(RequestOutcome::kUnprotected), 2u);
  EXPECT_EQ(metrics->counter_value("idem_fail_open_total", R"(scope="http",store="redis")"), 2u) << metrics->render();

  ASSERT_TRUE(redis->process().restart(&error)) << error;
  // Recovery (the breaker may take a moment to close).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  httplib::Result after = send("/closed", "after");
  while (after && after->status == 503 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    after = send("/closed", "after");
  }
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 201);
  EXPECT_EQ(send("/closed", "after")->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(send("/open", "after2")->status, 201);
  EXPECT_EQ(send("/open", "after2")->get_header_value("Idempotent-Replayed"), "true");
}
#endif

// --- Options are checked -----------------------------------------------------------------

TEST(HttpMiddlewareOptions, BadConfigurationIsATypedError) {
  auto store = idem::open_store("memory://").value();
  auto checker = std::make_shared<idem::IdempotencyChecker>(store);
  EXPECT_THROW(IdempotencyMiddleware(nullptr), idem::ConfigurationError);
  EXPECT_THROW(IdempotencyMiddleware(checker, {.header = ""}), idem::ConfigurationError);
  EXPECT_THROW(IdempotencyMiddleware(checker, {.wait_for_in_progress = std::chrono::hours(2)}),
               idem::ConfigurationError);
  auto unchecked = std::make_shared<idem::IdempotencyChecker>(store, idem::CheckerOptions{.validate_payload = false});
  EXPECT_THROW(IdempotencyMiddleware{unchecked}, idem::ConfigurationError);
  IdempotencyMiddleware ok(checker);
  EXPECT_THROW(ok.wrap({}), idem::ConfigurationError);
  try {
    (void)ok.wrap([](const httplib::Request&, httplib::Response&) {}, {.fingerprint = {.ignore_json_fields = {"x"}}});
    ADD_FAILURE() << "a bad JSON Pointer must be refused";
  } catch (const idem::ConfigurationError& e) {
    EXPECT_EQ(e.code(), idem::ErrorCode::kInvalidConfiguration);
    EXPECT_NE(std::string(e.what()).find("JSON Pointer"), std::string::npos);
  }
}

}  // namespace
