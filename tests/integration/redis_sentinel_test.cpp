// RedisStore through Sentinel (redis+sentinel://): one master, one replica and
// three sentinels on loopback. The contract suite runs against the
// discovered master; then the master is killed and operations must resume
// against the promoted replica within a bound.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "conformance/async_as_sync.h"
#include "conformance/store_contract.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using namespace std::chrono_literals;
using idem::test::RedisServer;
using idem::test::ServerProcess;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

std::optional<std::string> cmd(int port, const std::vector<std::string>& args) {
  return idem::test::raw_command({"127.0.0.1", static_cast<std::uint16_t>(port)}, args);
}

// A master, a replica and three sentinels.
struct SentinelWorld {
  std::unique_ptr<RedisServer> master;
  std::unique_ptr<RedisServer> replica;
  std::unique_ptr<idem::test::TempDir> dir;
  std::vector<std::unique_ptr<ServerProcess>> sentinels;
  std::vector<int> sentinel_ports;

  bool start(std::string* err) {
    master = RedisServer::start({}, err);
    if (!master) return false;
    replica = RedisServer::start({"--replicaof", "127.0.0.1", std::to_string(master->port())}, err);
    if (!replica) return false;
    if (!wait_until(
            [&] {
              auto info = cmd(replica->port(), {"INFO", "replication"});
              return info && info->find("master_link_status:up") != std::string::npos;
            },
            15s)) {
      *err = "replica did not sync";
      return false;
    }
    dir = std::make_unique<idem::test::TempDir>("sentinel");
    for (int i = 0; i < 3; ++i) {
      const int port = idem::test::free_port();
      const std::string conf = dir->file("sentinel-" + std::to_string(i) + ".conf");
      std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\nprotected-mode no\ndir " << dir->path()
                          << "\nsentinel monitor mymaster 127.0.0.1 " << master->port()
                          << " 2\nsentinel down-after-milliseconds mymaster 1000\n"
                             "sentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n";
      idem::test::ServerSpec spec;
      spec.binary = idem::test::redis_server_binary();
      spec.args = {conf, "--sentinel"};
      spec.work_dir = dir->path();
      spec.port = port;
      spec.name = "sentinel-" + std::to_string(i);
      auto p = ServerProcess::start(std::move(spec), err);
      if (!p) return false;
      sentinels.push_back(std::move(p));
      sentinel_ports.push_back(port);
    }
    // Sentinels must know the replica and each other before a failover can work.
    for (int port : sentinel_ports) {
      if (!wait_until(
              [&] {
                auto m = cmd(port, {"SENTINEL", "master", "mymaster"});
                return m && m->find("num-slaves\n1") != std::string::npos &&
                       m->find("num-other-sentinels\n2") != std::string::npos;
              },
              20s)) {
        *err = "sentinels did not discover each other and the replica";
        return false;
      }
    }
    return true;
  }

  std::string url(const std::string& query = "") const {
    std::string u = "redis+sentinel://";
    for (std::size_t i = 0; i < sentinel_ports.size(); ++i) {
      if (i > 0) u += ",";
      u += "127.0.0.1:" + std::to_string(sentinel_ports[i]);
    }
    return u + "/mymaster" + query;
  }
};

SentinelWorld* g_world = nullptr;

class SentinelEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
    std::string err;
    ASSERT_TRUE(world_.start(&err)) << err;
    g_world = &world_;
  }
  void TearDown() override { g_world = nullptr; }

 private:
  SentinelWorld world_;
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new SentinelEnvironment);

StoreFixture sentinel_fixture() {
  return StoreFixture{"RedisSentinel", [] {
                        g_world->master->command({"FLUSHALL"});
                        auto store = idem::RedisStore::open(g_world->url());
                        EXPECT_TRUE(store.ok()) << store.error().to_string();
                        return store.ok() ? *store : nullptr;
                      }};
}

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = "e";
  return r;
}

TEST(RedisSentinel, FollowsFailoverToThePromotedReplica) {
  // A world of its own: killing the shared master would break the suite.
  SentinelWorld world;
  std::string err;
  ASSERT_TRUE(world.start(&err)) << err;
  // WAIT 1: a claim counts only once the replica has it, so it survives the
  // failover.
  auto store = idem::RedisStore::open(
      world.url("?wait_replicas=1&wait_timeout_ms=1000&command_timeout_ms=2000&connect_timeout_ms=300"
                "&breaker_threshold=0"));
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  auto before = (*store)->claim(claim_req("idempotency:events:before-failover"));
  ASSERT_TRUE(before.ok()) << before.error().to_string();
  ASSERT_TRUE(before->acquired());
  // After the failover the new master has no replica left, so WAIT 1 could
  // never be met: the rest of the test uses a store without it.
  store = idem::RedisStore::open(world.url("?command_timeout_ms=500&connect_timeout_ms=300&breaker_threshold=0"));
  ASSERT_TRUE(store.ok()) << store.error().to_string();

  const int old_master = world.master->port();
  world.master->process().kill();
  const auto killed_at = std::chrono::steady_clock::now();
  // The bound: down-after (1 s) + election and promotion (a few s) + margin.
  constexpr auto kBound = 30s;
  bool resumed = false;
  int failures = 0;
  std::string last_error;
  for (int i = 0; std::chrono::steady_clock::now() - killed_at < kBound; ++i) {
    auto out = (*store)->claim(claim_req("idempotency:events:after-" + std::to_string(i)));
    if (out.ok() && out->acquired()) {
      resumed = true;
      break;
    }
    if (!out.ok()) {
      last_error = out.error().to_string();
      EXPECT_TRUE(out.error().code() == idem::ErrorCode::kUnavailable ||
                  out.error().code() == idem::ErrorCode::kTimeout)
          << out.error().to_string();
    }
    ++failures;
    std::this_thread::sleep_for(100ms);
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
  ASSERT_TRUE(resumed) << "no successful claim within " << kBound.count()
                       << " s of killing the master; last error: " << last_error;
  std::cout << "[ INFO     ] resumed " << took.count() << " ms after the master was killed (" << failures
            << " failed calls)\n";
  auto master = cmd(world.sentinel_ports[0], {"SENTINEL", "get-master-addr-by-name", "mymaster"});
  ASSERT_TRUE(master);
  EXPECT_EQ(*master, "127.0.0.1\n" + std::to_string(world.replica->port()));
  EXPECT_NE(world.replica->port(), old_master);
  // The claim confirmed by WAIT before the crash is still there.
  auto again = (*store)->claim(claim_req("idempotency:events:before-failover"));
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->status, idem::ClaimStatus::kInProgress);
  ASSERT_TRUE(again->record.has_value());
  EXPECT_EQ(again->record->token, before->token);
}

TEST(RedisSentinel, UnknownMasterNameIsUnavailable) {
  auto store = idem::RedisStore::open("redis+sentinel://127.0.0.1:" + std::to_string(g_world->sentinel_ports[0]) +
                                      "/nosuchmaster?retries=1");
  ASSERT_TRUE(store.ok());
  idem::Status st = (*store)->ping();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), idem::ErrorCode::kUnavailable);
  EXPECT_NE(st.error().message().find("nosuchmaster"), std::string::npos) << st.error().message();
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(RedisSentinel, sentinel_fixture());

// The same suite through the asynchronous API (each call is *_async + wait).
StoreFixture sentinel_fixture_async() {
  StoreFixture sync = sentinel_fixture();
  return StoreFixture{sync.name + "Async", [make = sync.make] { return idem::conformance::async_as_sync(make()); }};
}
INSTANTIATE_STORE_CONTRACT(RedisSentinelAsync, sentinel_fixture_async());

namespace {

// A manual failover (the old master stays up, to be demoted a while later):
// the store hears +switch-master on its sentinel subscription and drops its
// connections to the old master before any call is made, so the next claim
// goes straight to the new master. Without the subscription it would land on
// the old master, still writable, and be lost when that one is demoted.
TEST(RedisSentinel, FollowsSwitchMasterWithoutAnError) {
  SentinelWorld world;
  std::string err;
  ASSERT_TRUE(world.start(&err)) << err;
  auto store = idem::RedisStore::open(world.url("?command_timeout_ms=1000&breaker_threshold=0"));
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  auto first = (*store)->claim(claim_req("idempotency:events:before-switch"));
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  // Let the subscription settle before the failover is announced.
  std::this_thread::sleep_for(500ms);
  const int old_master = world.master->port();
  ASSERT_TRUE(cmd(world.sentinel_ports[0], {"SENTINEL", "FAILOVER", "mymaster"}));
  ASSERT_TRUE(wait_until(
      [&] {
        auto m = cmd(world.sentinel_ports[1], {"SENTINEL", "get-master-addr-by-name", "mymaster"});
        return m && *m != "127.0.0.1\n" + std::to_string(old_master);
      },
      30s))
      << "sentinel did not switch";
  std::this_thread::sleep_for(300ms);
  const auto before = *idem::RedisStore::client_stats(**store);
  auto after_switch = (*store)->claim(claim_req("idempotency:events:after-switch"));
  ASSERT_TRUE(after_switch.ok()) << after_switch.error().to_string();
  EXPECT_TRUE(after_switch->acquired());
  const auto after = *idem::RedisStore::client_stats(**store);
  EXPECT_EQ(after.retries, before.retries) << "the claim hit the old master first";
  EXPECT_GT(after.connects, before.connects) << "the connections to the old master were not dropped";
  const int new_master = world.replica->port();
  EXPECT_EQ(cmd(new_master, {"EXISTS", "idempotency:events:after-switch"}).value_or(""), "1")
      << "the claim did not reach the new master";
}

}  // namespace
