// Exactly-once effects under SIGKILL: 4 worker processes
// (postgres_exactly_once_worker) handle 1,000 keys delivered 3 times each in
// random order, with PostgresTransactionalProcessor writing one business row
// per execution in the handler's own transaction. A supervisor (this test)
// SIGKILLs workers at random points inside the handler (before the business
// write, between it and the commit, after the commit), restarts them, and
// redelivers what a killed worker held, as a broker would, until every key is
// done. Then each key's business row exists exactly once, its record is
// COMPLETED, and the record's result is that row's id (they committed
// together). The test reports how many kills landed in each window.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "idem/stores/postgres.h"
#include "integration/postgres_worker.h"
#include "support/postgres_server.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kWorkers = 4;
constexpr int kKeys = 1000;
constexpr int kDeliveriesPerKey = 3;
// Chance of a kill at each pause point of an execution.
constexpr double kKillChance = 0.025;

struct Delivery {
  std::string id;
  Clock::time_point not_before{};
};

// A worker process and what the supervisor knows of it.
struct Worker : idem::test::WorkerProcess {
  using WorkerProcess::WorkerProcess;
  bool ready = false;
  std::optional<Delivery> holding;
};

TEST(PostgresExactlyOnce, FourWorkersKilledInsideTheHandler) {
  if (!idem::test::postgres_available()) IDEM_SKIP_OR_FAIL("PostgreSQL 15 not found (set IDEM_PG_BINDIR)");
  ::signal(SIGPIPE, SIG_IGN);  // writing to a worker that just died must not kill the supervisor
  std::string err;
  auto server = idem::test::PostgresServer::start({}, &err);
  ASSERT_TRUE(server) << err;
  const std::string url = server->url("schema=eo");
  {
    auto store = idem::PostgresStore::open(url);  // creates the schema once
    ASSERT_TRUE(store.ok()) << store.error().to_string();
  }
  const std::string table = "eo.ledger";
  // No unique constraint: only Idem keeps a key from being written twice.
  ASSERT_TRUE(
      server->exec("CREATE TABLE " + table +
                       " (id bigserial PRIMARY KEY, key text NOT NULL, worker int NOT NULL, token bigint NOT NULL)",
                   &err))
      << err;

  std::mt19937_64 rng(20240611);
  std::deque<Delivery> queue;
  for (int round = 0; round < kDeliveriesPerKey; ++round) {
    for (int i = 0; i < kKeys; ++i) queue.push_back({"k" + std::to_string(i)});
  }
  std::shuffle(queue.begin(), queue.end(), rng);

  std::vector<std::unique_ptr<Worker>> workers;
  int spawned = 0;
  for (int i = 0; i < kWorkers; ++i) workers.push_back(std::make_unique<Worker>(url, table, ++spawned));
  std::array<int, 4> kills{};  // by pause point 1..3
  std::map<std::string, int> outcomes;
  int executions = 0;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  const auto deadline = Clock::now() + 240s;

  auto redeliver = [&](Delivery d, std::chrono::milliseconds delay) {
    d.not_before = Clock::now() + delay;
    queue.push_back(std::move(d));
  };
  auto busy = [&] {
    return std::any_of(workers.begin(), workers.end(), [](const auto& w) { return w->holding.has_value(); });
  };

  while ((!queue.empty() || busy()) && Clock::now() < deadline) {
    // Hand out deliveries that are due to idle workers.
    for (auto& w : workers) {
      if (!w->ready || w->holding) continue;
      const auto now = Clock::now();
      auto it = std::find_if(queue.begin(), queue.end(), [&](const Delivery& d) { return d.not_before <= now; });
      if (it == queue.end()) break;
      w->holding = *it;
      queue.erase(it);
      (void)w->send("D " + w->holding->id);  // a dead worker shows up as end of stream below
    }
    std::vector<pollfd> fds;
    for (auto& w : workers) fds.push_back(pollfd{w->fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 5);
    for (std::size_t i = 0; i < workers.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      Worker& w = *workers[i];
      std::vector<std::string> lines;
      bool alive = w.read_lines(lines);
      for (const std::string& line : lines) {
        if (!alive) break;
        std::istringstream in(line);
        std::string tag;
        in >> tag;
        if (tag == "READY") {
          w.ready = true;
        } else if (tag == "P") {
          int point = 0;
          in >> point;
          if (point >= 1 && point <= 3 && coin(rng) < kKillChance) {
            ++kills[static_cast<std::size_t>(point)];
            w.kill_now();
            alive = false;  // the broker redelivers what it held
          } else {
            (void)w.send("C");
          }
        } else if (tag == "R") {
          std::string id;
          std::string what;
          in >> id >> what;
          ++outcomes[what];
          if (what == "executed") ++executions;
          Delivery d = *w.holding;
          w.holding.reset();
          if (what == "in_progress" || what.starts_with("error:")) redeliver(std::move(d), 30ms);
        }
      }
      if (!alive) {
        if (w.holding) redeliver(*w.holding, 0ms);
        workers[i] = std::make_unique<Worker>(url, table, ++spawned);
      }
    }
  }
  workers.clear();
  ASSERT_TRUE(queue.empty()) << "not finished within the deadline; " << queue.size() << " deliveries left";

  std::cout << "[ INFO     ] kills: before the business write " << kills[1] << ", between it and the commit "
            << kills[2] << ", after the commit " << kills[3] << "; workers started " << spawned
            << "; handler executions committed " << executions << "; outcomes:";
  for (const auto& [what, n] : outcomes) std::cout << " " << what << "=" << n;
  std::cout << "\n";
  ::testing::Test::RecordProperty("kills_before_write", kills[1]);
  ::testing::Test::RecordProperty("kills_between_write_and_commit", kills[2]);
  ::testing::Test::RecordProperty("kills_after_commit", kills[3]);
  for (int point = 1; point <= 3; ++point) {
    EXPECT_GE(kills[static_cast<std::size_t>(point)], 3) << "too few kills at point " << point << " to mean anything";
  }

  // Each key's business row exactly once, and the record committed with it.
  const std::string rows = server
                               ->exec(
                                   "SELECT count(*), count(DISTINCT l.key), "
                                   "count(*) FILTER (WHERE r.status = 'COMPLETED' AND "
                                   "convert_from(r.result, 'UTF8') = l.id::text) "
                                   "FROM eo.ledger l LEFT JOIN eo.records r ON r.key = l.key")
                               .value_or("?");
  EXPECT_EQ(rows, std::to_string(kKeys) + "|" + std::to_string(kKeys) + "|" + std::to_string(kKeys))
      << "rows | distinct keys | rows whose record is COMPLETED with this row's id";
  const std::string twice =
      server
          ->exec(
              "SELECT coalesce(string_agg(key, ','), '') FROM (SELECT key FROM eo.ledger GROUP BY key "
              "HAVING count(*) > 1 LIMIT 10) d")
          .value_or("?");
  EXPECT_EQ(twice, "") << "keys whose effect happened more than once";
  EXPECT_EQ(server->exec("SELECT count(*) FROM eo.records WHERE status = 'COMPLETED'"),
            std::optional<std::string>(std::to_string(kKeys)));
  // Each committed execution left exactly one row: the kills after a commit
  // did not cause a second execution.
  EXPECT_EQ(executions + kills[3], kKeys) << "executions reported + executions killed after their commit";
}

}  // namespace
