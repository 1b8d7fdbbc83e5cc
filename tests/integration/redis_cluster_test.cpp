// RedisStore on Redis Cluster (redis+cluster://): three masters created by
// the test with `redis-cli --cluster create`. The contract suite, slot
// routing (a batch is split per node: one round trip per node), and MOVED /
// ASK handling while a slot is migrated by hand.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
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

  // start() creates `masters` masters with `replicas` replicas each.
  bool start(std::string* err, int masters = 3, int replicas = 0, const std::string& node_timeout_ms = "3000",
             const std::vector<std::string>& extra = {}) {
    const std::string cli = idem::test::redis_cli_binary();
    if (cli.empty()) {
      *err = "redis-cli not found";
      return false;
    }
    std::vector<std::string> create = {cli, "--cluster", "create"};
    for (int i = 0; i < masters * (1 + replicas); ++i) {
      // The cluster bus listens on port + 10000.
      const int port =
          idem::test::free_port_where([](int p) { return p <= 55535 && idem::test::port_free(p + 10000); });
      std::vector<std::string> args = {"--cluster-enabled",      "yes",          "--cluster-config-file", "nodes.conf",
                                       "--cluster-node-timeout", node_timeout_ms};
      args.insert(args.end(), extra.begin(), extra.end());
      auto n = RedisServer::start(args, err, nullptr, false, port);
      if (!n) return false;
      create.push_back("127.0.0.1:" + std::to_string(n->port()));
      nodes.push_back(std::move(n));
    }
    create.insert(create.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
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
  // url_all() names every node as a seed: a store opened while one is dead
  // still finds the cluster.
  std::string url_all(const std::string& query = "") const {
    std::string u = "redis+cluster://";
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (i > 0) u += ",";
      u += "127.0.0.1:" + std::to_string(nodes[i]->port());
    }
    return u + query;
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

namespace {

// The port of the master serving `slot`, from CLUSTER SLOTS as seen by `n`.
int master_of_slot(RedisServer& n, long long slot) {
  auto slots = n.command({"CLUSTER", "SLOTS"});
  if (!slots) return 0;
  // Flattened: lo, hi, master ip, master port, master id, [replica ip, port, id]...
  std::vector<std::string> f;
  std::istringstream in(*slots);
  for (std::string line; std::getline(in, line);) f.push_back(line);
  for (std::size_t i = 0; i + 3 < f.size(); ++i) {
    long long lo = 0;
    long long hi = 0;
    try {
      lo = std::stoll(f[i]);
      hi = std::stoll(f[i + 1]);
    } catch (...) {
      continue;
    }
    if (lo <= slot && slot <= hi && f[i + 2] == "127.0.0.1") return std::stoi(f[i + 3]);
  }
  return 0;
}

bool is_outage(const idem::Error& e) {
  return e.code() == idem::ErrorCode::kUnavailable || e.code() == idem::ErrorCode::kTimeout;
}

// Kill a master with SIGKILL under load; its replica is promoted; the client
// must follow by itself (a dead node never sends -MOVED: only refreshing the
// slot map on the broken connections finds the new master), meanwhile fail
// only with typed errors, keep serving the keys of the healthy masters
// (per-node circuit breakers), and lose nothing it acknowledged with WAIT.
TEST(RedisClusterFailover, KilledMasterIsFollowedToItsPromotedReplica) {
  ClusterWorld world;
  std::string err;
  // Three masters with a replica each; a short node timeout so that the
  // failover starts about a second after the kill; the healthy masters keep
  // serving while one shard is down.
  ASSERT_TRUE(world.start(&err, 3, 1, "1000", {"--cluster-require-full-coverage", "no"})) << err;
  for (auto& n : world.nodes) {
    ASSERT_TRUE(wait_until(
        [&] {
          auto info = n->command({"INFO", "replication"});
          return info && (info->find("role:master") != std::string::npos ||
                          info->find("master_link_status:up") != std::string::npos);
        },
        20s))
        << "replicas did not sync";
  }
  // One hash tag per master, so that the test knows which keys die with it.
  RedisServer& any = *world.nodes[0];
  std::map<int, std::string> tag_of_master;  // master port -> tag
  for (int i = 0; tag_of_master.size() < 3 && i < 10'000; ++i) {
    const std::string tag = "t" + std::to_string(i);
    const long long slot = std::stoll(any.command({"CLUSTER", "KEYSLOT", tag}).value_or("-1"));
    const int port = master_of_slot(any, slot);
    if (port != 0 && !tag_of_master.contains(port)) tag_of_master[port] = tag;
  }
  ASSERT_EQ(tag_of_master.size(), 3u);
  const int victim_port = tag_of_master.begin()->first;
  const std::string victim_tag = tag_of_master.begin()->second;
  RedisServer* victim = world.by_port(victim_port);
  ASSERT_NE(victim, nullptr);

  // Store A: no WAIT (measures how fast the client follows). Store B:
  // claims and completions confirmed by one replica (nothing it acknowledged
  // may be lost).
  const std::string q = "?command_timeout_ms=500&connect_timeout_ms=300&retries=2";
  auto a = idem::RedisStore::open(world.url_all(q));
  auto b = idem::RedisStore::open(world.url_all(q + "&wait_replicas=1&wait_timeout_ms=200"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->ping().ok());
  ASSERT_TRUE((*b)->ping().ok());

  using Clock = std::chrono::steady_clock;
  std::mutex mutex;
  std::vector<std::string> acknowledged_a;
  std::vector<std::string> acknowledged_b;
  std::string other_error;
  std::atomic<int> typed_errors{0};
  std::atomic<int> healthy_errors{0};  // on the keys of the two healthy masters, while the victim is down
  std::atomic<int> healthy_successes{0};
  std::atomic<bool> killed{false};
  std::atomic<bool> stop{false};
  std::atomic<long long> resumed_ms{-1};
  Clock::time_point killed_at{};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      idem::Store& store = t % 2 == 0 ? **a : **b;
      auto& acked = t % 2 == 0 ? acknowledged_a : acknowledged_b;
      int n = 0;
      while (!stop.load()) {
        for (const auto& [port, tag] : tag_of_master) {
          const std::string key = "idempotency:events:{" + tag + "}w" + std::to_string(t) + "-" + std::to_string(n);
          const bool victim_key = port == victim_port;
          const bool down = killed.load() && resumed_ms.load() < 0;
          idem::ClaimRequest r;
          r.key = key;
          r.event_id = "e";
          auto out = store.claim(r);
          idem::Status st =
              out.ok() ? store.complete({.key = key, .token = out->token, .result = "r"}) : idem::Status(out.error());
          if (st.ok() && out->acquired()) {
            std::lock_guard lock(mutex);
            acked.push_back(key);
            if (down && !victim_key) healthy_successes.fetch_add(1);
            if (victim_key && killed.load() && t % 2 == 0 && resumed_ms.load() < 0) {
              resumed_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at).count());
            }
          } else if (!st.ok()) {
            if (is_outage(st.error())) {
              typed_errors.fetch_add(1);
              if (down && !victim_key && t % 2 == 0) healthy_errors.fetch_add(1);
            } else {
              std::lock_guard lock(mutex);
              if (other_error.empty()) other_error = st.error().to_string();
            }
          }
        }
        ++n;
      }
    });
  }
  std::this_thread::sleep_for(500ms);
  killed_at = Clock::now();
  killed.store(true);
  victim->process().kill();
  // The bound: node timeout (1 s) + replica election (up to ~1.5 s) + the
  // client's slot-map refresh and retries, with a wide margin for a loaded
  // CI machine.
  constexpr auto kBound = 20s;
  const bool resumed = wait_until([&] { return resumed_ms.load() >= 0; }, kBound);
  std::this_thread::sleep_for(300ms);
  stop.store(true);
  for (auto& w : workers) w.join();

  ASSERT_TRUE(resumed) << "no completed event on the killed master's slots within " << kBound.count() << " s";
  std::cout << "[ INFO     ] resumed " << resumed_ms.load() << " ms after the master was killed; "
            << typed_errors.load() << " typed errors meanwhile; " << healthy_successes.load()
            << " events on the healthy masters during the outage\n";
  EXPECT_TRUE(other_error.empty()) << "every failure must be unavailable or timeout: " << other_error;
  EXPECT_GT(typed_errors.load(), 0) << "the outage must be seen";
  EXPECT_GT(healthy_successes.load(), 0) << "the healthy masters must keep serving";
  EXPECT_EQ(healthy_errors.load(), 0) << "one dead node must not fail the keys of the others (per-node breakers)";
  const auto stats = *idem::RedisStore::client_stats(**a);
  EXPECT_GT(stats.topology_refreshes, 1u) << "the slot map must be refreshed after the broken connections";

  // Nothing acknowledged with WAIT is lost; without WAIT, a completion in the
  // master's last moments may be (asynchronous replication): count them.
  auto fresh = idem::RedisStore::open(world.url_all(q));
  ASSERT_TRUE(fresh.ok());
  auto count_lost = [&](const std::vector<std::string>& keys) {
    int lost = 0;
    for (const std::string& key : keys) {
      auto rec = (*fresh)->get(key);
      EXPECT_TRUE(rec.ok()) << rec.error().to_string();
      if (!rec.ok()) return -1;
      if (!rec->has_value() || (*rec)->status != idem::ProcessingStatus::kCompleted) ++lost;
    }
    return lost;
  };
  const int lost_b = count_lost(acknowledged_b);
  const int lost_a = count_lost(acknowledged_a);
  std::cout << "[ INFO     ] acknowledged: " << acknowledged_b.size() << " with WAIT (" << lost_b << " lost), "
            << acknowledged_a.size() << " without (" << lost_a << " lost)\n";
  EXPECT_EQ(lost_b, 0) << "a completion confirmed by a replica was lost in the failover";
  ASSERT_FALSE(acknowledged_b.empty());
}

}  // namespace
