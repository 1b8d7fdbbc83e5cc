// Fault tests for RedisStore: AUTH / ACL users / db index; Redis killed
// mid-stream and restarted; Redis frozen with SIGSTOP (timeouts, the circuit
// breaker opens, recovery after SIGCONT); a fake server that answers with
// garbage or retryable errors (no crash, typed errors, retries only when safe).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "idem/core/processor.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"
#include "stores/redis/scripts.h"

namespace {

using namespace std::chrono_literals;
using idem::ErrorCode;
using idem::test::RedisServer;

class RedisFault : public ::testing::Test {
 protected:
  void SetUp() override {
    if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  }
};

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = "e";
  return r;
}

std::shared_ptr<idem::Store> must_open(const std::string& url) {
  auto s = idem::RedisStore::open(url);
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return s.ok() ? *s : nullptr;
}

bool is_outage(const idem::Error& e) { return e.code() == ErrorCode::kUnavailable || e.code() == ErrorCode::kTimeout; }

// ---------------------------------------------------------------------------
// AUTH, ACL users, db index.

TEST_F(RedisFault, PasswordAclUserAndDbIndex) {
  std::string err;
  auto server = RedisServer::start({"--requirepass", "s3cret"}, &err);
  ASSERT_TRUE(server) << err;
  ASSERT_TRUE(server->command({"ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all"}, &err)) << err;
  ASSERT_TRUE(server->command({"ACL", "SETUSER", "bob", "on", ">bob-pw", "~*", "+@read", "+ping"}, &err)) << err;
  const std::string hp = "127.0.0.1:" + std::to_string(server->port());

  // No password, wrong password, a user without the right to run scripts:
  // typed, not retried, not a Redis outage.
  for (const std::string& url :
       {"redis://" + hp, "redis://:wrong@" + hp, "redis://alice:wrong@" + hp, "redis://bob:bob-pw@" + hp}) {
    auto store = must_open(url);
    ASSERT_TRUE(store);
    auto out = store->claim(claim_req("idempotency:events:auth"));
    ASSERT_FALSE(out.ok()) << url;
    EXPECT_EQ(out.error().code(), ErrorCode::kInvalidConfiguration) << url << ": " << out.error().to_string();
  }

  auto by_password = must_open("redis://:s3cret@" + hp + "/0");
  auto by_user_db5 = must_open("redis://alice:alice-pw@" + hp + "/5");
  ASSERT_TRUE(by_password && by_user_db5);
  auto a = by_password->claim(claim_req("idempotency:events:same"));
  auto b = by_user_db5->claim(claim_req("idempotency:events:same"));
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  ASSERT_TRUE(b.ok()) << b.error().to_string();
  EXPECT_TRUE(a->acquired());
  EXPECT_TRUE(b->acquired()) << "db 5 is a separate keyspace";
  std::optional<std::string> keyspace = server->command({"INFO", "keyspace"});
  ASSERT_TRUE(keyspace);
  EXPECT_NE(keyspace->find("db0:keys=1"), std::string::npos) << *keyspace;
  EXPECT_NE(keyspace->find("db5:keys=1"), std::string::npos) << *keyspace;
}

// ---------------------------------------------------------------------------
// Killed mid-stream, restarted.

TEST_F(RedisFault, KilledMidStreamThenRestarted) {
  std::string err;
  // fsync every write: what Redis acknowledged must survive the crash.
  auto server = RedisServer::start({"--appendonly", "yes", "--appendfsync", "always"}, &err);
  ASSERT_TRUE(server) << err;
  auto store = must_open(server->url() + "?command_timeout_ms=500&connect_timeout_ms=500&breaker_threshold=0");
  ASSERT_TRUE(store);

  std::mutex mutex;
  std::set<std::string> acknowledged;  // complete() returned OK
  std::atomic<int> handler_runs{0};
  std::atomic<int> claims_acquired{0};
  std::atomic<int> outage_errors{0};
  std::atomic<int> other_errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = "idempotency:events:crash-" + std::to_string(t) + "-" + std::to_string(i);
        auto out = store->claim(claim_req(key));
        if (!out) {
          (is_outage(out.error()) ? outage_errors : other_errors).fetch_add(1);
          std::this_thread::sleep_for(5ms);
          continue;
        }
        if (!out->acquired()) continue;
        claims_acquired.fetch_add(1);
        handler_runs.fetch_add(1);  // the "handler" runs only with a claim
        idem::Status st = store->complete({.key = key, .token = out->token, .result = "done"});
        if (st.ok()) {
          std::lock_guard lock(mutex);
          acknowledged.insert(key);
        } else if (!is_outage(st.error())) {
          other_errors.fetch_add(1);
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  server->process().kill();
  std::this_thread::sleep_for(300ms);
  const int outages_while_down = outage_errors.load();
  ASSERT_TRUE(server->process().restart(&err)) << err;
  std::this_thread::sleep_for(500ms);
  stop.store(true);
  for (auto& w : workers) w.join();

  EXPECT_GT(outages_while_down, 0) << "calls during the outage must fail with unavailable/timeout";
  EXPECT_EQ(other_errors.load(), 0) << "every failure must be typed unavailable or timeout";
  EXPECT_EQ(handler_runs.load(), claims_acquired.load());
  std::set<std::string> after_restart;
  {
    std::lock_guard lock(mutex);
    after_restart = acknowledged;
  }
  ASSERT_FALSE(after_restart.empty());
  // Nothing acknowledged is lost, and work resumed after the restart.
  int lost = 0;
  for (const std::string& key : after_restart) {
    auto rec = store->get(key);
    ASSERT_TRUE(rec.ok()) << rec.error().to_string();
    if (!rec->has_value() || (*rec)->status != idem::ProcessingStatus::kCompleted) ++lost;
  }
  EXPECT_EQ(lost, 0) << "acknowledged completions lost across the crash";
  auto fresh = store->claim(claim_req("idempotency:events:after-restart"));
  ASSERT_TRUE(fresh.ok()) << fresh.error().to_string();
  EXPECT_TRUE(fresh->acquired());
}

// The same crash through the guard, as a service uses it: with the default
// fail-closed policy a handler body never runs unless its claim reached
// Redis. Every key whose handler ran must therefore have a record after the
// restart (AOF with fsync always), and the outage must surface as
// StoreUnavailableError from process(), never as a silent run.
TEST_F(RedisFault, GuardNeverRunsAHandlerWithoutAClaimAcrossACrash) {
  std::string err;
  auto server = RedisServer::start({"--appendonly", "yes", "--appendfsync", "always"}, &err);
  ASSERT_TRUE(server) << err;
  auto store = must_open(server->url() + "?command_timeout_ms=500&connect_timeout_ms=500&breaker_threshold=0");
  ASSERT_TRUE(store);
  auto checker = std::make_shared<idem::IdempotencyChecker>(store, idem::CheckerOptions{.lease = 10s});
  idem::IdempotentEventProcessor processor(checker, {.heartbeat = false});

  std::mutex mutex;
  std::vector<std::string> ran;  // store keys whose handler body ran
  std::string first_unexpected;
  std::atomic<int> unavailable{0};
  std::atomic<int> unexpected{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        idem::Envelope envelope;
        envelope.event_id = "guard-" + std::to_string(t) + "-" + std::to_string(i);
        try {
          auto ctx = processor.process(envelope);
          if (!ctx.should_process()) continue;
          {
            std::lock_guard lock(mutex);
            ran.push_back(ctx.key());
          }
          ctx.mark_completed("done");
        } catch (const idem::StoreUnavailableError&) {
          unavailable.fetch_add(1);
          std::this_thread::sleep_for(5ms);
        } catch (const std::exception& e) {
          if (unexpected.fetch_add(1) == 0) {
            std::lock_guard lock(mutex);
            first_unexpected = e.what();
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  server->process().kill();
  // Longer than the guard's own completion retries (50 + 100 + 200 ms of
  // backoff): a worker caught in mark_completed at the kill must come back
  // to process() while Redis is still down.
  std::this_thread::sleep_for(800ms);
  ASSERT_TRUE(server->process().restart(&err)) << err;
  std::this_thread::sleep_for(300ms);
  stop.store(true);
  for (auto& w : workers) w.join();

  EXPECT_GT(unavailable.load(), 0) << "the outage must reach the caller as StoreUnavailableError";
  EXPECT_EQ(unexpected.load(), 0) << first_unexpected;
  ASSERT_FALSE(ran.empty());
  int without_record = 0;
  for (const std::string& key : ran) {
    auto record = store->get(key);
    ASSERT_TRUE(record.ok()) << record.error().to_string();
    if (!record->has_value()) ++without_record;
  }
  EXPECT_EQ(without_record, 0) << "handlers ran for keys whose claim never reached Redis";
}

// ---------------------------------------------------------------------------
// Frozen (SIGSTOP): timeouts, the breaker opens, SIGCONT: it recovers.

TEST_F(RedisFault, FrozenServerTimesOutOpensBreakerAndRecovers) {
  std::string err;
  auto server = RedisServer::start({}, &err);
  ASSERT_TRUE(server) << err;
  std::mutex mutex;
  std::vector<idem::CircuitState> transitions;
  idem::RedisStoreOptions opt;
  opt.endpoints = {{"127.0.0.1", static_cast<std::uint16_t>(server->port())}};
  opt.command_timeout = 200ms;
  opt.connect_timeout = 200ms;
  opt.pool_size = 1;
  opt.retry.max_attempts = 1;
  opt.circuit_breaker.failure_threshold = 3;
  opt.circuit_breaker.open_duration = 400ms;
  opt.on_circuit_change = [&](idem::CircuitState s) {
    std::lock_guard lock(mutex);
    transitions.push_back(s);
  };
  auto created = idem::RedisStore::create(opt);
  ASSERT_TRUE(created.ok());
  std::shared_ptr<idem::Store> store = *created;
  ASSERT_TRUE(store->ping().ok());

  server->process().pause();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto out = store->claim(claim_req("idempotency:events:frozen-" + std::to_string(i)));
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().code(), ErrorCode::kTimeout) << out.error().to_string();
    EXPECT_LT(took, 2s) << "the command timeout must bound a call";
  }
  EXPECT_EQ(idem::RedisStore::client_stats(*store)->circuit, idem::CircuitState::kOpen);
  const auto start = std::chrono::steady_clock::now();
  auto fast = store->claim(claim_req("idempotency:events:frozen-fast"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 50ms) << "an open circuit must fail fast";
  ASSERT_FALSE(fast.ok());
  EXPECT_EQ(fast.error().code(), ErrorCode::kUnavailable);
  EXPECT_GE(idem::RedisStore::client_stats(*store)->rejected, 1u);

  server->process().resume();
  std::this_thread::sleep_for(opt.circuit_breaker.open_duration + 100ms);
  auto ok = store->claim(claim_req("idempotency:events:thawed"));
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_TRUE(ok->acquired());
  EXPECT_EQ(idem::RedisStore::client_stats(*store)->circuit, idem::CircuitState::kClosed);
  std::lock_guard lock(mutex);
  EXPECT_EQ(transitions, (std::vector<idem::CircuitState>{idem::CircuitState::kOpen, idem::CircuitState::kHalfOpen,
                                                          idem::CircuitState::kClosed}));
}

// ---------------------------------------------------------------------------
// A fake server: answers the handshake (+OK per command),
// then whatever the test says, command by command (one SCRIPT LOAD per script first). TIME (the client's clock
// samples) is answered +OK apart from that count: it leaves the client
// without a server clock, so that claims go through the claim script, whose
// replies the tests write.

class FakeServer {
 public:
  // respond(n) returns the bytes to send for the n-th non-handshake command
  // (0-based); an empty string means "say nothing"; "<close>" closes.
  using Responder = std::function<std::string(int n)>;

  explicit FakeServer(Responder respond, int handshake = static_cast<int>(idem::redis_detail::kScriptCount))
      : respond_(std::move(respond)), handshake_(handshake) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeServer() {
    stop_.store(true);
    thread_.join();
    for (auto& t : connections_) t.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int commands() const { return commands_.load(); }
  std::string url(const std::string& query = "") const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "?retries=3&command_timeout_ms=300&connect_timeout_ms=300" +
           query;
  }

 private:
  void loop() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      connections_.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }
  void serve(int c) {
    redisReader* reader = redisReaderCreate();
    int seen = 0;
    char buf[65536];
    while (!stop_.load()) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      redisReaderFeed(reader, buf, static_cast<std::size_t>(n));
      void* reply = nullptr;
      bool close_now = false;
      while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply != nullptr) {
        const auto* command = static_cast<const redisReply*>(reply);
        const bool is_time = command->type == REDIS_REPLY_ARRAY && command->elements == 1 &&
                             std::string_view(command->element[0]->str, command->element[0]->len) == "TIME";
        freeReplyObject(reply);
        std::string out;
        std::lock_guard lock(respond_mutex_);  // responders count calls
        if (is_time) {
          out = "+OK\r\n";
        } else if (seen++ < handshake_) {
          out = "+OK\r\n";
        } else {
          out = respond_(commands_.fetch_add(1));
        }
        if (out == "<close>") {
          close_now = true;
          break;
        }
        if (!out.empty()) (void)::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      }
      if (close_now) break;
    }
    redisReaderFree(reader);
  }

  Responder respond_;
  std::mutex respond_mutex_;
  int handshake_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> commands_{0};
  std::thread thread_;
  std::vector<std::thread> connections_;  // only the accept thread touches it
};

TEST(RedisFakeServer, GarbageRepliesNeverCrashAndAreTypedErrors) {
  const std::vector<std::string> garbage = {
      "\x01\x02\x03 not resp at all\r\n",
      "+OK\r\n",  // wrong shape for every operation
      ":notanumber\r\n",
      "*-5\r\n",
      "*2\r\n:1\r\n",  // truncated array, then silence
      "$-7\r\n",
      "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",    // nested too deep
      "*5\r\n$1\r\nA\r\n$1\r\nN\r\n$3\r\nabc\r\n:1\r\n:1\r\n",                 // claim with a bad token
      "*4\r\n$1\r\nC\r\n:1\r\n:1\r\n*3\r\n$1\r\ns\r\n$1\r\nC\r\n$1\r\nt\r\n",  // odd field list
      "*4\r\n$1\r\nC\r\n:1\r\n:1\r\n*2\r\n$1\r\ns\r\n$1\r\nQ\r\n",             // unknown status
      "*4\r\n$1\r\nZ\r\n:1\r\n:1\r\n*0\r\n",                                   // unknown claim tag
      "*3\r\n:1\r\n:2\r\n*1\r\n:3\r\n",                                        // get with odd list
      "-ERR something odd\r\n",
      "$999999999\r\nshort",   // bulk never completes
      "*500000001\r\n:1\r\n",  // an array header asking for 4 GB (found by fuzz_redis_reply)
      "<close>",
  };
  for (const std::string& g : garbage) {
    SCOPED_TRACE(testing::PrintToString(g));
    FakeServer fake([&](int) { return g; });
    auto store = must_open(fake.url("&breaker_threshold=0"));
    ASSERT_TRUE(store);
    auto c = store->claim(claim_req("idempotency:events:g"));
    EXPECT_FALSE(c.ok() && c->acquired()) << "garbage must never look like an acquired claim";
    if (!c.ok()) {
      EXPECT_TRUE(c.error().code() == ErrorCode::kInternal || c.error().code() == ErrorCode::kCorrupt ||
                  is_outage(c.error()))
          << c.error().to_string();
    }
    (void)store->get("idempotency:events:g");
    EXPECT_FALSE(store->complete({.key = "idempotency:events:g", .token = 1, .result = "r"}).ok());
    (void)store->scan({});
    (void)store->stats();
    (void)store->remove("idempotency:events:g");
  }
}

TEST(RedisFakeServer, RetryableReplyIsRetriedWithBackoff) {
  // -LOADING twice, then a valid acquire.
  FakeServer fake([](int n) -> std::string {
    if (n < 2) return "-LOADING Redis is loading the dataset in memory\r\n";
    return "*5\r\n$1\r\nA\r\n$1\r\nN\r\n$16\r\n1700000000000001\r\n:1\r\n:1700000030000\r\n";
  });
  auto store = must_open(fake.url());
  ASSERT_TRUE(store);
  auto out = store->claim(claim_req("idempotency:events:loading"));
  ASSERT_TRUE(out.ok()) << out.error().to_string();
  EXPECT_TRUE(out->acquired());
  EXPECT_EQ(out->token, 1700000000000001u);
  EXPECT_EQ(idem::RedisStore::client_stats(*store)->retries, 2u);
}

TEST(RedisFakeServer, ClaimThatMayHaveRunIsNotRetried) {
  // The server reads the claim and never answers: the claim may have run, so
  // retrying it could hold the key twice. Exactly one claim must be sent.
  FakeServer fake([](int) { return std::string(); });
  auto store = must_open(fake.url());
  ASSERT_TRUE(store);
  auto out = store->claim(claim_req("idempotency:events:silent"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), ErrorCode::kTimeout) << out.error().to_string();
  EXPECT_EQ(fake.commands(), 1);
  // A read is idempotent: it is retried (3 tries).
  auto got = store->get("idempotency:events:silent");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(fake.commands(), 4);
}

TEST(RedisFakeServer, ConnectionRefusedIsUnavailable) {
  const int port = idem::test::free_port();
  auto store = must_open("redis://127.0.0.1:" + std::to_string(port) + "?retries=2");
  ASSERT_TRUE(store);
  auto out = store->claim(claim_req("idempotency:events:refused"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), ErrorCode::kUnavailable) << out.error().to_string();
  EXPECT_EQ(idem::RedisStore::client_stats(*store)->retries, 1u) << "nothing was sent: a claim may be retried";
  EXPECT_THROW((void)out.value(), idem::StoreUnavailableError);
}

}  // namespace

namespace {

// The least privilege docs/redis.md gives for a standalone server works for
// every operation; each permission taken away fails with kInvalidConfiguration
// naming what is missing (never "internal", never "unexpected reply"); and
// without the optional pub/sub permissions wait_settled() still works, by
// polling.
TEST_F(RedisFault, AclLeastPrivilegeAndPermissionErrorsNameWhatIsMissing) {
  std::string err;
  auto server = RedisServer::start({}, &err);
  ASSERT_TRUE(server) << err;
  const std::vector<std::string> needed = {"~idempotency:*", "-@all", "+ping",        "+script|load", "+evalsha",
                                           "+eval",          "+set",  "+get",         "+del",         "+scan",
                                           "+info",          "+time", "+pexpiretime", "+wait"};
  const std::vector<std::string> optional = {"&idem:settled:*", "+publish", "+subscribe", "+unsubscribe"};
  auto user = [&](const std::string& name, const std::vector<std::string>& without, bool pubsub) {
    std::vector<std::string> acl = {"ACL", "SETUSER", name, "on", ">pw"};
    for (const std::string& p : needed) {
      if (std::find(without.begin(), without.end(), p) == without.end()) acl.push_back(p);
    }
    if (pubsub) acl.insert(acl.end(), optional.begin(), optional.end());
    std::string e;
    EXPECT_TRUE(server->command(acl, &e)) << e;
    return "redis://" + name + ":pw@127.0.0.1:" + std::to_string(server->port()) +
           "?retries=1&command_timeout_ms=500&connect_timeout_ms=500";
  };

  // Everything, with the documented set.
  auto full = must_open(user("full", {}, true));
  const std::string k = "idempotency:events:acl-";
  auto a = full->claim(claim_req(k + "a"));
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  ASSERT_TRUE(full->extend(k + "a", a->token, 10s).ok());
  ASSERT_TRUE(full->checkpoint(k + "a", a->token, {"n", "d"}).ok());
  std::thread waiter([&] { EXPECT_TRUE(full->wait_settled(k + "a", 5s).ok()); });
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(full->complete({.key = k + "a", .token = a->token, .result = "r"}).ok());
  waiter.join();
  auto b = full->claim(claim_req(k + "b")).value();
  ASSERT_TRUE(full->fail({.key = k + "b", .token = b.token, .error = "e", .retryable = true}).ok());
  EXPECT_TRUE(full->get(k + "a").ok());
  EXPECT_TRUE(full->scan({}).ok());
  EXPECT_TRUE(full->stats().ok());
  EXPECT_TRUE(full->remove(k + "a").ok());

  auto expect_denied = [](const idem::Status& st, const std::string& names) {
    ASSERT_FALSE(st.ok()) << "expected a permission error naming " << names;
    EXPECT_EQ(st.error().code(), ErrorCode::kInvalidConfiguration) << st.error().to_string();
    EXPECT_NE(st.error().message().find(names), std::string::npos) << st.error().to_string();
    EXPECT_NE(st.error().message().find("permission denied"), std::string::npos) << st.error().to_string();
  };
  // No DEL: remove() says so (the bench's cleanup must not pass silently).
  auto no_del = must_open(user("nodel", {"+del"}, false));
  auto removed = no_del->remove(k + "b");
  expect_denied(removed.ok() ? idem::Status() : idem::Status(removed.error()), "'del'");
  // No WAIT with wait_replicas: the claim says so.
  auto no_wait = must_open(user("nowait", {"+wait"}, false) + "&wait_replicas=1&wait_timeout_ms=50");
  auto w = no_wait->claim(claim_req(k + "c"));
  expect_denied(w.ok() ? idem::Status() : idem::Status(w.error()), "'wait'");
  // No TIME: the connection's clock sample says so.
  auto no_time = must_open(user("notime", {"+time"}, false));
  expect_denied(no_time->ping(), "'time'");
  // No PEXPIRETIME: a script is refused one of its commands; the message
  // lists what that script calls.
  auto no_pexp = must_open(user("nopexp", {"+pexpiretime"}, false));
  auto got = no_pexp->get(k + "b");
  expect_denied(got.ok() ? idem::Status() : idem::Status(got.error()), "PEXPIRETIME");
  // Keys outside the pattern.
  auto other = must_open(user("keys", {}, false));
  idem::ClaimRequest outside;
  outside.key = "other:prefix:x";
  outside.event_id = "x";
  auto o = other->claim(outside);
  expect_denied(o.ok() ? idem::Status() : idem::Status(o.error()), "key pattern");

  // Without the optional pub/sub permissions: completions still work, and
  // a waiter still sees the completion (by polling).
  auto quiet = must_open(user("nopubsub", {}, false));
  auto q = quiet->claim(claim_req(k + "q")).value();
  std::thread poller([&] {
    auto settled = quiet->wait_settled(k + "q", 5s);
    ASSERT_TRUE(settled.ok()) << settled.error().to_string();
    ASSERT_TRUE(settled->has_value());
    EXPECT_EQ((*settled)->status, idem::ProcessingStatus::kCompleted);
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(quiet->complete({.key = k + "q", .token = q.token, .result = "r"}).ok());
  poller.join();
}

}  // namespace
