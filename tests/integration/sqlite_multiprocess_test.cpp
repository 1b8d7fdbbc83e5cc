// File: tests/integration/sqlite_multiprocess_test.cpp
//
// Several processes on one SQLite file: the once-only promise must hold
// across processes, not only threads. Workers are fork()ed children, each
// opening its own SqliteStore after the fork (a connection must never cross
// a fork). Each "handler body" appends the key to a per-process file; the
// parent then checks that every key ran exactly once in total.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "idem/stores/sqlite.h"

namespace idem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kProcesses = 4;
constexpr int kKeys = 1000;

std::string key_of(int i) { return "mp:key-" + std::to_string(i); }

ClaimRequest req(const std::string& key, std::chrono::milliseconds lease) {
  ClaimRequest r;
  r.key = key;
  r.event_id = key;
  r.event_type = "multiprocess";
  r.lease = lease;
  r.ttl = 3600s;
  return r;
}

class SqliteMultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "idem-sqlite-mp-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    db_ = (dir_ / "shared.db").string();
    ASSERT_EQ(::pipe(gate_), 0);
  }
  void TearDown() override {
    open_gate();
    ::close(gate_[0]);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs `body(index)` in a child process; returns its pid. The child's exit
  // code is the body's return value.
  template <typename Body>
  pid_t spawn(int index, Body body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Wait for the starting gun so that all workers really overlap.
      ::close(gate_[1]);
      char byte = 0;
      (void)::read(gate_[0], &byte, 1);
      int rc = 99;
      try {
        rc = body(index);
      } catch (...) {
        rc = 98;
      }
      ::_exit(rc);  // skip gtest's and the parent's atexit handlers
    }
    return pid;
  }

  // Lets every spawned child go at once (they block until the pipe closes).
  void open_gate() {
    if (gate_[1] >= 0) ::close(gate_[1]);
    gate_[1] = -1;
  }

  void wait_all(const std::vector<pid_t>& pids) {
    open_gate();
    for (pid_t pid : pids) {
      ASSERT_GT(pid, 0);
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFEXITED(status)) << "worker " << pid << " died";
      EXPECT_EQ(WEXITSTATUS(status), 0) << "worker " << pid << " reported errors (see its stderr)";
    }
  }

  // Counts how many times each key's handler body ran, over all workers.
  std::map<std::string, int> effects() const {
    std::map<std::string, int> runs;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (!entry.path().filename().string().starts_with("effects-")) continue;
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);) ++runs[line];
    }
    return runs;
  }

  Result<std::shared_ptr<Store>> open() const {
    SqliteStoreOptions o;
    o.path = db_;
    o.busy_timeout = 20s;
    o.max_connections = 2;
    return SqliteStore::create(o);
  }

  // One worker: walks every key (from its own starting point), runs the
  // handler for the keys it acquires, and comes back for keys still in
  // progress until all are finished.
  int worker(int index) const {
    Result<std::shared_ptr<Store>> store = open();
    if (!store) {
      std::fprintf(stderr, "worker %d: %s\n", index, store.error().to_string().c_str());
      return 1;
    }
    std::ofstream effects(dir_ / ("effects-" + std::to_string(index)), std::ios::app);
    std::vector<int> pending;
    for (int n = 0; n < kKeys; ++n) pending.push_back((n + index * (kKeys / kProcesses)) % kKeys);
    int errors = 0;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!pending.empty() && std::chrono::steady_clock::now() < deadline) {
      std::vector<int> again;
      for (int i : pending) {
        const std::string key = key_of(i);
        Result<ClaimOutcome> out = (*store)->claim(req(key, 2s));
        if (!out) {
          std::fprintf(stderr, "worker %d: claim %s: %s\n", index, key.c_str(), out.error().to_string().c_str());
          ++errors;
          again.push_back(i);
          continue;
        }
        if (out->status == ClaimStatus::kInProgress) {
          again.push_back(i);
          continue;
        }
        if (!out->acquired()) continue;
        effects << key << '\n' << std::flush;  // the handler body
        const std::string result = "by-" + std::to_string(index);
        CompleteRequest done;
        done.key = key;
        done.token = out->token;
        done.result = result;
        done.ttl = 3600s;
        if (Status s = (*store)->complete(done); !s) {
          std::fprintf(stderr, "worker %d: complete %s: %s\n", index, key.c_str(), s.error().to_string().c_str());
          ++errors;
        }
      }
      pending = std::move(again);
      if (!pending.empty()) std::this_thread::sleep_for(50ms);
    }
    if (!pending.empty()) {
      std::fprintf(stderr, "worker %d: %zu keys never finished\n", index, pending.size());
      ++errors;
    }
    return errors == 0 ? 0 : 1;
  }

  fs::path dir_;
  std::string db_;
  int gate_[2] = {-1, -1};
};

TEST_F(SqliteMultiProcessTest, FourProcessesEachKeyRunsExactlyOnce) {
  // The workers also race to create the schema on a file that does not exist.
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcesses; ++i) pids.push_back(spawn(i, [this](int index) { return worker(index); }));
  wait_all(pids);

  std::map<std::string, int> runs = effects();
  EXPECT_EQ(runs.size(), static_cast<std::size_t>(kKeys));
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    const int n = runs.count(key_of(i)) != 0 ? runs[key_of(i)] : 0;
    if (n != 1 && ++wrong <= 5) ADD_FAILURE() << key_of(i) << " ran " << n << " times";
  }
  EXPECT_EQ(wrong, 0);

  Result<std::shared_ptr<Store>> store = open();
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  Result<StoreStats> stats = (*store)->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->completed, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(stats->processing, 0u);
}

TEST_F(SqliteMultiProcessTest, ManyProcessesCreateAFreshFileAtOnce) {
  // Turning a new file into WAL mode can answer SQLITE_BUSY without waiting
  // for busy_timeout; opening must retry instead of failing.
  for (int round = 0; round < 5; ++round) {
    const std::string path = (dir_ / ("fresh-" + std::to_string(round) + ".db")).string();
    std::vector<pid_t> pids;
    for (int i = 0; i < 8; ++i) {
      pids.push_back(spawn(i, [&path](int index) {
        SqliteStoreOptions o;
        o.path = path;
        o.busy_timeout = 20s;
        Result<std::shared_ptr<Store>> store = SqliteStore::create(o);
        if (!store) {
          std::fprintf(stderr, "worker %d: %s\n", index, store.error().to_string().c_str());
          return 1;
        }
        Result<ClaimOutcome> out = (*store)->claim(req("k" + std::to_string(index), 30s));
        return out && out->acquired() ? 0 : 2;
      }));
    }
    wait_all(pids);
    ::close(gate_[0]);
    ASSERT_EQ(::pipe(gate_), 0);
  }
}

TEST_F(SqliteMultiProcessTest, CrashedWorkersKeysAreTakenOverByOthers) {
  // A worker claims the first 100 keys with a short lease and dies without
  // completing them (as a crash mid-handler would). The others take them
  // over once the lease runs out, and finish everything exactly once.
  constexpr int kCrashed = 100;
  const pid_t crasher = spawn(99, [this](int) {
    Result<std::shared_ptr<Store>> store = open();
    if (!store) return 1;
    for (int i = 0; i < kCrashed; ++i) {
      Result<ClaimOutcome> out = (*store)->claim(req(key_of(i), 500ms));
      if (!out || !out->acquired()) return 2;
      if (!(*store)->checkpoint(key_of(i), out->token, Checkpoint{"crashed", "at step 1"})) return 3;
    }
    ::_exit(0);  // dies holding the leases
  });
  wait_all({crasher});
  ::close(gate_[0]);
  ASSERT_EQ(::pipe(gate_), 0);

  std::vector<pid_t> pids;
  for (int i = 0; i < kProcesses - 1; ++i) pids.push_back(spawn(i, [this](int index) { return worker(index); }));
  wait_all(pids);

  std::map<std::string, int> runs = effects();
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    const int n = runs.count(key_of(i)) != 0 ? runs[key_of(i)] : 0;
    if (n != 1 && ++wrong <= 5) ADD_FAILURE() << key_of(i) << " ran " << n << " times";
  }
  EXPECT_EQ(wrong, 0);

  Result<std::shared_ptr<Store>> store = open();
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < kKeys; i += 7) {
    Result<std::optional<IdempotencyRecord>> rec = (*store)->get(key_of(i));
    ASSERT_TRUE(rec.ok() && rec->has_value()) << key_of(i);
    EXPECT_EQ((*rec)->status, ProcessingStatus::kCompleted) << key_of(i);
    EXPECT_EQ((*rec)->attempt, i < kCrashed ? 2u : 1u) << key_of(i);
  }
}

}  // namespace
}  // namespace idem
