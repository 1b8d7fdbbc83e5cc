// RedisStore on Redis Cluster (redis+cluster://): three masters created by
// the test with `redis-cli --cluster create`. The contract suite, slot
// routing (a batch is split per node: one round trip per node), and MOVED /
// ASK handling while a slot is migrated by hand.
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "conformance/async_as_sync.h"
#include "conformance/store_contract.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using namespace std::chrono_literals;
using idem::test::RedisServer;

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

struct ClusterWorld {
  std::vector<std::unique_ptr<RedisServer>> nodes;

  bool start(std::string* err) {
    const std::string cli = idem::test::redis_cli_binary();
    if (cli.empty()) {
      *err = "redis-cli not found";
      return false;
    }
    std::vector<std::string> create = {cli, "--cluster", "create"};
    for (int i = 0; i < 3; ++i) {
      // The cluster bus listens on port + 10000.
      const int port =
          idem::test::free_port_where([](int p) { return p <= 55535 && idem::test::port_free(p + 10000); });
      auto n = RedisServer::start(
          {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "3000"}, err,
          nullptr, false, port);
      if (!n) return false;
      create.push_back("127.0.0.1:" + std::to_string(n->port()));
      nodes.push_back(std::move(n));
    }
    create.insert(create.end(), {"--cluster-replicas", "0", "--cluster-yes"});
    std::string out;
    if (idem::test::run_command(create, &out) != 0) {
      *err = "redis-cli --cluster create failed: " + out;
      return false;
    }
    for (auto& n : nodes) {
      if (!wait_until(
              [&] {
                auto info = n->command({"CLUSTER", "INFO"});
                return info && info->find("cluster_state:ok") != std::string::npos;
              },
              20s)) {
        *err = "cluster did not reach state ok";
        return false;
      }
    }
    return true;
  }
  std::string url(const std::string& query = "") const {
    // One seed is enough; the rest is discovered.
    return "redis+cluster://127.0.0.1:" + std::to_string(nodes[0]->port()) + query;
  }
  void flush() {
    for (auto& n : nodes) n->command({"FLUSHALL"});
  }
  RedisServer* by_port(int port) {
    for (auto& n : nodes) {
      if (n->port() == port) return n.get();
    }
    return nullptr;
  }
};

ClusterWorld* g_world = nullptr;

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (idem::test::redis_server_binary().empty() || idem::test::redis_cli_binary().empty()) {
      IDEM_SKIP_OR_FAIL("redis-server or redis-cli not found (set IDEM_REDIS_SERVER / IDEM_REDIS_CLI)");
    }
    std::string err;
    ASSERT_TRUE(world_.start(&err)) << err;
    g_world = &world_;
  }
  void TearDown() override { g_world = nullptr; }

 private:
  ClusterWorld world_;
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

StoreFixture cluster_fixture() {
  return StoreFixture{"RedisCluster", [] {
                        g_world->flush();
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

TEST(RedisCluster, BatchIsSplitBySlotOneRoundTripPerNode) {
  g_world->flush();
  auto store = idem::RedisStore::open(g_world->url("?pool_size=1"));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->ping().ok());  // topology and connections
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back("idempotency:events:slot-" + std::to_string(i));
  std::vector<idem::ClaimRequest> batch;
  for (const auto& k : keys) batch.push_back(claim_req(k));
  const auto before = *idem::RedisStore::client_stats(**store);
  auto outs = (*store)->claim_many(batch);
  ASSERT_TRUE(outs.ok()) << outs.error().to_string();
  const auto after = *idem::RedisStore::client_stats(**store);
  for (const auto& o : *outs) EXPECT_TRUE(o.acquired());
  EXPECT_EQ(after.round_trips - before.round_trips, 3u) << "one round trip per master";
  EXPECT_EQ(after.redirects, before.redirects) << "the slot map must route without redirects";
  std::uint64_t total = 0;
  for (auto& n : g_world->nodes) {
    const auto size = std::stoull(n->command({"DBSIZE"}).value_or("0"));
    EXPECT_GT(size, 50u) << "keys must spread over every master";
    total += size;
  }
  EXPECT_EQ(total, keys.size());
}

std::string node_id(RedisServer& n) { return n.command({"CLUSTER", "MYID"}).value_or(""); }

TEST(RedisCluster, FollowsAskDuringMigrationAndMovedAfterIt) {
  g_world->flush();
  auto store = idem::RedisStore::open(g_world->url());
  ASSERT_TRUE(store.ok());
  const std::string old_key = "idempotency:events:{mig}old";
  const std::string new_key = "idempotency:events:{mig}new";
  auto first = (*store)->claim(claim_req(old_key));
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  ASSERT_TRUE(first->acquired());

  const std::string slot = g_world->nodes[0]->command({"CLUSTER", "KEYSLOT", old_key}).value();
  // Which node has the slot, and pick another as the target.
  RedisServer* source = nullptr;
  for (auto& n : g_world->nodes) {
    if (n->command({"CLUSTER", "COUNTKEYSINSLOT", slot}).value_or("0") != "0") source = n.get();
  }
  ASSERT_NE(source, nullptr);
  RedisServer* target = g_world->nodes[0].get() == source ? g_world->nodes[1].get() : g_world->nodes[0].get();
  const std::string source_id = node_id(*source);
  const std::string target_id = node_id(*target);
  ASSERT_TRUE(target->command({"CLUSTER", "SETSLOT", slot, "IMPORTING", source_id}));
  ASSERT_TRUE(source->command({"CLUSTER", "SETSLOT", slot, "MIGRATING", target_id}));

  // A key of that slot that does not exist on the source yet: -ASK.
  const auto r0 = idem::RedisStore::client_stats(**store)->redirects;
  auto fresh = (*store)->claim(claim_req(new_key));
  ASSERT_TRUE(fresh.ok()) << fresh.error().to_string();
  EXPECT_TRUE(fresh->acquired());
  EXPECT_GT(idem::RedisStore::client_stats(**store)->redirects, r0) << "expected an ASK redirection";

  // Move the old key and hand the slot over: -MOVED.
  std::string err;
  ASSERT_TRUE(source->command({"MIGRATE", "127.0.0.1", std::to_string(target->port()), old_key, "0", "5000"}, &err))
      << err;
  for (auto& n : g_world->nodes) ASSERT_TRUE(n->command({"CLUSTER", "SETSLOT", slot, "NODE", target_id}));
  const auto r1 = idem::RedisStore::client_stats(**store)->redirects;
  auto dup = (*store)->claim(claim_req(old_key));
  ASSERT_TRUE(dup.ok()) << dup.error().to_string();
  EXPECT_EQ(dup->status, idem::ClaimStatus::kInProgress);
  ASSERT_TRUE(dup->record.has_value());
  EXPECT_EQ(dup->record->token, first->token);
  EXPECT_GT(idem::RedisStore::client_stats(**store)->redirects, r1) << "expected a MOVED redirection";
  // And the map is fixed: the next call goes straight to the new owner.
  const auto r2 = idem::RedisStore::client_stats(**store)->redirects;
  ASSERT_TRUE((*store)->complete({.key = old_key, .token = first->token, .result = "r"}).ok());
  EXPECT_EQ(idem::RedisStore::client_stats(**store)->redirects, r2);
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(RedisCluster, cluster_fixture());

// The same suite through the asynchronous API (each call is *_async + wait).
StoreFixture cluster_fixture_async() {
  StoreFixture sync = cluster_fixture();
  return StoreFixture{sync.name + "Async", [make = sync.make] { return idem::conformance::async_as_sync(make()); }};
}
INSTANTIATE_STORE_CONTRACT(RedisClusterAsync, cluster_fixture_async());
