// The stores of a chaos run and their faults; see store_env.h.
#include "chaos/store_env.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>

#include "support/server_process.h"
#ifdef IDEM_CHAOS_HAVE_REDIS
#include "integration/redis_support.h"
#endif
#ifdef IDEM_CHAOS_HAVE_POSTGRES
#include "idem/stores/postgres.h"
#include "support/postgres_server.h"
#endif

namespace idem::chaos {
namespace {

using namespace std::chrono_literals;

void record(HistoryWriter& h, std::string_view op, const std::string& what, std::int64_t aux = 0) {
  Event e;
  e.proc = "harness";
  e.op = std::string(op);
  e.status = what;
  e.aux = aux;
  h.write(std::move(e));
}

int between(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, std::max(lo, hi))(rng);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

// ---------------------------------------------------------------------------
// SQLite: one file. There is no server to kill; the store-side faults are a
// process that takes the write lock, freezes with it held, and is then
// killed in the middle of its transaction (SQLite must recover the WAL).

class SqliteEnv final : public StoreEnv {
 public:
  SqliteEnv(std::string path, int lease_ms) : path_(std::move(path)), lease_ms_(lease_ms) {}

  bool prepare(std::string* error) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open(path_.c_str(), &db);
    if (rc == SQLITE_OK) {
      rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS chaos_lock(x INTEGER)", nullptr,
                        nullptr, nullptr);
    }
    if (rc != SQLITE_OK && error) *error = "sqlite: " + std::string(sqlite3_errstr(rc));
    sqlite3_close(db);
    return rc == SQLITE_OK;
  }

  std::string url() const override { return "sqlite://" + path_ + "?busy_timeout_ms=2000"; }
  std::vector<std::string> faults() const override { return {"lock"}; }

  bool inject(const std::string& fault, std::mt19937_64& rng, HistoryWriter& h, std::string* error) override {
    if (fault != "lock") return false;
    int ready[2];
    if (::pipe(ready) != 0) return false;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::close(ready[0]);
      sqlite3* db = nullptr;
      if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) ::_exit(1);
      sqlite3_busy_timeout(db, 10'000);
      if (sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO chaos_lock VALUES (1)", nullptr, nullptr, nullptr) !=
          SQLITE_OK) {
        ::_exit(1);
      }
      const char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) ::_exit(1);
      for (;;) ::pause();  // frozen with the write lock held
    }
    ::close(ready[1]);
    char byte = 0;
    const bool locked = ::read(ready[0], &byte, 1) == 1;
    ::close(ready[0]);
    if (locked) {
      record(h, op::kStoreFault, "lock", pid);
      // Sometimes past the workers' busy_timeout (2 s), so calls time out.
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, lease_ms_ / 2, 3'000)));
    }
    ::kill(pid, SIGKILL);  // dies in the middle of its transaction
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (locked) record(h, op::kStoreHeal, "unlock", pid);
    if (!locked && error) *error = "the lock holder could not take the write lock";
    return locked;
  }

 private:
  std::string path_;
  int lease_ms_;
};

#ifdef IDEM_CHAOS_HAVE_REDIS

using idem::test::RedisServer;
using idem::test::ServerProcess;

// Persistence on, fsync on every write: a killed and restarted server keeps
// every write it acknowledged, which the checker then holds it to.
const std::vector<std::string> kDurable = {"--appendonly", "yes", "--appendfsync", "always"};
// Timeouts well under the lease so that a frozen server shows as errors, and
// no circuit breaker, so that every call reaches the server and is recorded.
const std::string kClientQuery = "command_timeout_ms=300&connect_timeout_ms=300&breaker_threshold=0";

class RedisEnv final : public StoreEnv {
 public:
  RedisEnv(std::unique_ptr<RedisServer> server, int lease_ms) : server_(std::move(server)), lease_ms_(lease_ms) {}

  std::string url() const override { return server_->url() + "?" + kClientQuery; }
  std::vector<std::string> faults() const override { return {"kill", "freeze"}; }

  bool inject(const std::string& fault, std::mt19937_64& rng, HistoryWriter& h, std::string* error) override {
    ServerProcess& p = server_->process();
    if (fault == "kill") {
      record(h, op::kStoreFault, "kill", p.pid());
      p.kill();
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, 100, lease_ms_)));
      if (!p.restart(error)) return false;
      record(h, op::kStoreHeal, "restart", p.pid());
      return true;
    }
    if (fault == "freeze") {
      record(h, op::kStoreFault, "freeze", p.pid());
      p.pause();
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, lease_ms_ / 2, lease_ms_ * 2)));
      p.resume();
      record(h, op::kStoreHeal, "thaw", p.pid());
      return true;
    }
    return false;
  }

 private:
  std::unique_ptr<RedisServer> server_;
  int lease_ms_;
};

std::optional<std::string> cmd(int port, const std::vector<std::string>& args) {
  return idem::test::raw_command({"127.0.0.1", static_cast<std::uint16_t>(port)}, args);
}

// A master, a replica and three sentinels. Claims wait for the replica
// (wait_replicas=1), so an acquired claim survives a failover.
class SentinelEnv final : public StoreEnv {
 public:
  explicit SentinelEnv(int lease_ms) : lease_ms_(lease_ms) {}

  bool start(const std::string& dir, std::string* error) {
    servers_.push_back(RedisServer::start(kDurable, error));
    if (!servers_.back()) return false;
    std::vector<std::string> replica = kDurable;
    replica.insert(replica.end(), {"--replicaof", "127.0.0.1", std::to_string(servers_[0]->port())});
    servers_.push_back(RedisServer::start(replica, error));
    if (!servers_.back()) return false;
    if (!replica_synced(servers_[1]->port())) {
      *error = "the replica did not sync";
      return false;
    }
    for (int i = 0; i < 3; ++i) {
      const int port = idem::test::free_port();
      const std::string conf = dir + "/sentinel-" + std::to_string(i) + ".conf";
      // down-after is above the longest freeze, so a freeze is a freeze and
      // only `failover` moves the master.
      std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\nprotected-mode no\ndir " << dir
                          << "\nsentinel monitor mymaster 127.0.0.1 " << servers_[0]->port()
                          << " 2\nsentinel down-after-milliseconds mymaster " << lease_ms_ * 4
                          << "\nsentinel failover-timeout mymaster 10000\nsentinel parallel-syncs mymaster 1\n";
      idem::test::ServerSpec spec;
      spec.binary = idem::test::redis_server_binary();
      spec.args = {conf, "--sentinel"};
      spec.work_dir = dir;
      spec.port = port;
      spec.name = "sentinel-" + std::to_string(i);
      auto p = ServerProcess::start(std::move(spec), error);
      if (!p) return false;
      sentinels_.push_back(std::move(p));
    }
    for (const auto& s : sentinels_) {
      if (!wait_until(
              [&] {
                auto m = cmd(s->port(), {"SENTINEL", "master", "mymaster"});
                return m && m->find("num-slaves\n1") != std::string::npos &&
                       m->find("num-other-sentinels\n2") != std::string::npos;
              },
              30s)) {
        *error = "the sentinels did not discover each other and the replica";
        return false;
      }
    }
    return true;
  }

  std::string url() const override {
    std::string u = "redis+sentinel://";
    for (std::size_t i = 0; i < sentinels_.size(); ++i) {
      u += (i > 0 ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(sentinels_[i]->port());
    }
    return u + "/mymaster?" + kClientQuery + "&wait_replicas=1&wait_timeout_ms=200";
  }
  std::vector<std::string> faults() const override { return {"failover", "freeze"}; }

  bool inject(const std::string& fault, std::mt19937_64& rng, HistoryWriter& h, std::string* error) override {
    const int master = master_port();
    RedisServer* m = server_on(master);
    if (m == nullptr) {
      *error = "the sentinels name no known master";
      return false;
    }
    if (fault == "freeze") {
      record(h, op::kStoreFault, "freeze", m->process().pid());
      m->process().pause();
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, lease_ms_ / 2, lease_ms_ * 2)));
      m->process().resume();
      record(h, op::kStoreHeal, "thaw", m->process().pid());
      return true;
    }
    if (fault != "failover") return false;
    record(h, op::kStoreFault, "failover", master);
    auto reply = cmd(sentinels_[0]->port(), {"SENTINEL", "FAILOVER", "mymaster"});
    const bool moved = reply && wait_until([&] { return master_port() != master; }, 20s);
    // The old master must follow the new one before WAIT can succeed again.
    // The sentinels would tell it to, but only once they next poll it (up to
    // 10 s); doing it at once keeps a failover to a few seconds, so a short
    // run holds several rounds of faults.
    const int promoted = moved ? master_port() : 0;
    if (promoted != 0) cmd(master, {"REPLICAOF", "127.0.0.1", std::to_string(promoted)});
    const bool synced = moved && replica_synced(master);
    record(h, op::kStoreHeal, "failover", master_port());
    if (!synced) *error = moved ? "the old master did not resync" : "the failover did not happen";
    return synced;
  }

 private:
  static bool replica_synced(int port) {
    return wait_until(
        [&] {
          auto info = cmd(port, {"INFO", "replication"});
          return info && info->find("role:slave") != std::string::npos &&
                 info->find("master_link_status:up") != std::string::npos;
        },
        30s);
  }
  int master_port() const {
    auto addr = cmd(sentinels_[0]->port(), {"SENTINEL", "get-master-addr-by-name", "mymaster"});
    if (!addr) return 0;
    const auto nl = addr->find('\n');
    return nl == std::string::npos ? 0 : std::atoi(addr->c_str() + nl + 1);
  }
  RedisServer* server_on(int port) {
    for (auto& s : servers_) {
      if (s->port() == port) return s.get();
    }
    return nullptr;
  }

  int lease_ms_;
  std::vector<std::unique_ptr<RedisServer>> servers_;
  std::vector<std::unique_ptr<ServerProcess>> sentinels_;
};

#endif  // IDEM_CHAOS_HAVE_REDIS

#ifdef IDEM_CHAOS_HAVE_POSTGRES

using idem::test::PostgresServer;

// PostgreSQL in transactional mode: each effect is a row of chaos_effects
// written in the transaction that completes the key (worker.cpp), so the
// run must end with one row per completed key and none anywhere else. The
// table has no unique key on purpose: a second committed effect must show
// as a second row, not as a constraint error. Faults: the server killed
// (SIGKILL of every process, crash recovery on restart), stopped (fast
// shutdown) and restarted, or frozen (SIGSTOP of the whole process group, so
// the backends freeze mid-statement with their locks held).
class PostgresEnv final : public StoreEnv {
 public:
  PostgresEnv(std::unique_ptr<PostgresServer> server, int lease_ms) : server_(std::move(server)), lease_ms_(lease_ms) {}

  bool prepare(std::string* error) {
    if (!server_->exec(std::string("CREATE TABLE ") + std::string(kChaosEffectsTable) +
                           " (key bigint NOT NULL, token bigint NOT NULL, at timestamptz NOT NULL DEFAULT "
                           "clock_timestamp()); CREATE INDEX ON " +
                           std::string(kChaosEffectsTable) + " (key)",
                       error)) {
      return false;
    }
    // The schema exists before the workers race to create it.
    auto store = idem::PostgresStore::open(url());
    if (!store && error) *error = store.error().to_string();
    return store.ok();
  }

  // Timeouts under the lease so that a frozen server shows as errors, and no
  // circuit breaker, so that every call reaches the server and is recorded.
  std::string url() const override {
    return server_->url(
        "command_timeout_ms=1000&connect_timeout_ms=500&tx_statement_timeout_ms=1000&breaker_threshold=0");
  }
  std::vector<std::string> faults() const override { return {"kill", "restart", "freeze"}; }
  bool transactional() const override { return true; }

  bool inject(const std::string& fault, std::mt19937_64& rng, HistoryWriter& h, std::string* error) override {
    const pid_t pid = server_->process().pid();
    if (fault == "kill" || fault == "restart") {
      record(h, op::kStoreFault, fault, pid);
      if (fault == "kill") {
        server_->kill();
      } else {
        server_->stop();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, 100, lease_ms_)));
      if (!server_->restart(error)) return false;
      record(h, op::kStoreHeal, "restart", server_->process().pid());
      return true;
    }
    if (fault == "freeze") {
      record(h, op::kStoreFault, "freeze", pid);
      ::kill(-pid, SIGSTOP);  // the postmaster leads its own process group
      std::this_thread::sleep_for(std::chrono::milliseconds(between(rng, lease_ms_ / 2, lease_ms_ * 2)));
      ::kill(-pid, SIGCONT);
      record(h, op::kStoreHeal, "thaw", pid);
      return true;
    }
    return false;
  }

 private:
  std::unique_ptr<PostgresServer> server_;
  int lease_ms_;
};

#endif  // IDEM_CHAOS_HAVE_POSTGRES

class UrlEnv final : public StoreEnv {
 public:
  explicit UrlEnv(std::string url) : url_(std::move(url)) {}
  std::string url() const override { return url_; }
  std::vector<std::string> faults() const override { return {}; }
  bool inject(const std::string&, std::mt19937_64&, HistoryWriter&, std::string*) override { return false; }

 private:
  std::string url_;
};

struct Entry {
  const char* name;
  std::function<std::unique_ptr<StoreEnv>(const StoreSpec&, std::string*, bool*)> start;
};

// The stores.
const std::vector<Entry>& entries() {
  static const std::vector<Entry> table = {
      {"sqlite",
       [](const StoreSpec& s, std::string* error, bool*) -> std::unique_ptr<StoreEnv> {
         auto env = std::make_unique<SqliteEnv>(s.dir + "/chaos.db", s.lease_ms);
         if (!env->prepare(error)) return nullptr;
         return env;
       }},
#ifdef IDEM_CHAOS_HAVE_REDIS
      {"redis",
       [](const StoreSpec& s, std::string* error, bool* missing) -> std::unique_ptr<StoreEnv> {
         if (idem::test::redis_server_binary().empty()) {
           *missing = true;
           *error = "redis-server not found (set IDEM_REDIS_SERVER)";
           return nullptr;
         }
         auto server = RedisServer::start(kDurable, error);
         if (!server) return nullptr;
         return std::make_unique<RedisEnv>(std::move(server), s.lease_ms);
       }},
      {"redis-sentinel",
       [](const StoreSpec& s, std::string* error, bool* missing) -> std::unique_ptr<StoreEnv> {
         if (idem::test::redis_server_binary().empty()) {
           *missing = true;
           *error = "redis-server not found (set IDEM_REDIS_SERVER)";
           return nullptr;
         }
         auto env = std::make_unique<SentinelEnv>(s.lease_ms);
         if (!env->start(s.dir, error)) return nullptr;
         return env;
       }},
#endif
#ifdef IDEM_CHAOS_HAVE_POSTGRES
      {"postgres",
       [](const StoreSpec& s, std::string* error, bool* missing) -> std::unique_ptr<StoreEnv> {
         if (!idem::test::postgres_available()) {
           *missing = true;
           *error = "PostgreSQL 15 not found (install postgresql-15 or set IDEM_PG_BINDIR)";
           return nullptr;
         }
         auto server = PostgresServer::start({}, error);
         if (!server) return nullptr;
         auto env = std::make_unique<PostgresEnv>(std::move(server), s.lease_ms);
         if (!env->prepare(error)) return nullptr;
         return env;
       }},
#endif
  };
  return table;
}

}  // namespace

std::unique_ptr<StoreEnv> start_store(const std::string& name, const StoreSpec& spec, std::string* error,
                                      bool* missing) {
  *missing = false;
  if (name.rfind("url:", 0) == 0) return std::make_unique<UrlEnv>(name.substr(4));
  for (const Entry& e : entries()) {
    if (name == e.name) return e.start(spec, error, missing);
  }
  *error = "unknown store '" + name + "'";
  return nullptr;
}

std::vector<std::string> store_names() {
  std::vector<std::string> names;
  for (const Entry& e : entries()) names.emplace_back(e.name);
  names.emplace_back("url:<store URL>");
  return names;
}

}  // namespace idem::chaos
