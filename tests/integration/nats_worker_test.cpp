// `idem nats-worker` and `idem nats-publish` as real processes against a real
// nats-server -js and a SQLite store: copies, a worker SIGKILLed mid-handler,
// and three workers sharing one durable consumer while one of them is killed
// and restarted twice. The ledger file (KEY TOKEN PID per handler run) is the
// side effect whose duplicates are counted. With a real PostgreSQL and
// --ledger-table, the row commits with the completion: workers killed
// between the insert and the commit, and after the commit, leave every key
// exactly one row.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "idem/integrations/nats.h"
#include "idem/stores/sqlite.h"
#include "integration/nats_support.h"
#include "support/nats_server.h"
#ifdef IDEM_NATS_TEST_HAVE_POSTGRES
#include "support/postgres_server.h"
#endif

extern char** environ;

namespace {

using namespace std::chrono_literals;
using idem::test::slurp;
using idem::test::wait_until;

// Child is a process of ours with stdout and stderr in files; it dies with
// the test process, and is SIGKILLed when destroyed still running.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string out, std::string err)
      : out_(std::move(out)), err_(std::move(err)) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::execve(argv[0], argv.data(), environ);
      ::_exit(127);
    }
  }
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  bool running() const { return pid_ > 0; }

  // SIGTERM, then the exit code (or -signal) once it ended; SIGKILL after
  // `grace`.
  int terminate(std::chrono::milliseconds grace = 20s) {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (reap(WNOHANG)) return status_;
      std::this_thread::sleep_for(10ms);
    }
    kill();
    return status_;
  }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap(0);
  }

 private:
  bool reap(int flags) {
    int status = 0;
    if (::waitpid(pid_, &status, flags) != pid_) return false;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    pid_ = -1;
    return true;
  }
  std::string out_, err_;
  pid_t pid_ = -1;
  int status_ = -1000;
};

struct LedgerLine {
  std::string key;
  idem::Token token = 0;
  pid_t pid = 0;
};

std::vector<LedgerLine> read_ledger(const std::string& path) {
  std::vector<LedgerLine> lines;
  std::istringstream in(slurp(path));
  LedgerLine l;
  while (in >> l.key >> l.token >> l.pid) lines.push_back(l);
  return lines;
}

class NatsWorkerTest : public idem::test::NatsSuite {
 protected:
  void SetUp() override {
    NatsSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    static int counter = 0;
    ++counter;
    stream_ = "W" + std::to_string(counter);
    subject_ = "w" + std::to_string(counter) + ".events";
    dir_ = std::make_unique<idem::test::TempDir>("nats-worker");
    store_url_ = "sqlite://" + dir_->file("idem.db");
    ledger_ = dir_->file("ledger");
    store_args_ = {"--store", store_url_, "--ledger", ledger_};
    auto conn = idem::nats::Connection::connect({.url = server().url()});
    ASSERT_TRUE(conn.ok()) << conn.error().to_string();
    conn_ = *conn;
  }

  std::unique_ptr<Child> start_worker(const std::vector<std::string>& extra = {}, const std::string& lease = "1s") {
    std::vector<std::string> args = {
        IDEM_CLI_PATH, "nats-worker", "--nats",  server().url(), "--stream", stream_,         "--subjects",
        subject_,      "--consumer",  "workers", "--lease",      lease,      "--concurrency", "4"};
    args.insert(args.end(), store_args_.begin(), store_args_.end());
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string tag = dir_->file("worker-" + std::to_string(++workers_));
    auto child = std::make_unique<Child>(args, tag + ".out", tag + ".err");
    const bool ready = wait_until([&] { return child->err().find("consuming") != std::string::npos; }, 10s);
    EXPECT_TRUE(ready) << child->err();
    return child;
  }

  std::string write_events(int count, bool garbage = false) {
    const std::string path = dir_->file("events.jsonl");
    std::ofstream out(path);
    for (int i = 0; i < count; ++i) {
      out << R"({"event_id":"evt-)" << i << R"(","event_type":"order.paid","payload":{"amount":)" << i << "}}\n";
    }
    if (garbage) out << "not json at all\n";
    return path;
  }

  int publish(const std::string& file, int copies, std::string* output = nullptr) {
    return idem::test::run_command({IDEM_CLI_PATH, "nats-publish", "--nats", server().url(), "--subject", subject_,
                                    "--file", file, "--copies", std::to_string(copies)},
                                   output);
  }

  bool drained() {
    auto s = idem::test::consumer_state(*conn_, stream_, "workers");
    return s && s->num_pending == 0 && s->num_ack_pending == 0;
  }

  std::shared_ptr<idem::IdempotencyChecker> checker() { return idem::IdempotencyChecker::from_url(store_url_).value(); }

  std::string stream_, subject_, store_url_, ledger_;
  std::vector<std::string> store_args_;  // where the workers keep records and write their effect
  std::unique_ptr<idem::test::TempDir> dir_;
  std::shared_ptr<idem::nats::Connection> conn_;
  int workers_ = 0;
};

TEST_F(NatsWorkerTest, EveryEnvelopePublishedThreeTimesLeavesOneLedgerLinePerKey) {
  auto worker = start_worker();
  std::string output;
  ASSERT_EQ(publish(write_events(100, true), 3, &output), 0) << output;
  EXPECT_NE(output.find("published=303 acknowledged=303 duplicates=0 failed=0"), std::string::npos) << output;
  ASSERT_TRUE(wait_until([&] { return read_ledger(ledger_).size() >= 100 && drained(); }, 30s));
  ASSERT_EQ(worker->terminate(), 0) << worker->err();

  const auto lines = read_ledger(ledger_);
  std::set<std::string> keys;
  for (const auto& l : lines) {
    EXPECT_TRUE(keys.insert(l.key).second) << "two ledger lines for " << l.key;
    EXPECT_GT(l.token, 0U);
  }
  EXPECT_EQ(keys.size(), 100U);
  const std::string summary = worker->out();
  EXPECT_NE(summary.find("nats-worker: stopped:"), std::string::npos) << summary;
  EXPECT_NE(summary.find(" acked=100 "), std::string::npos) << summary;
  EXPECT_NE(summary.find(" duplicates=200 "), std::string::npos) << summary;
  EXPECT_NE(summary.find(" dead_lettered=3 "), std::string::npos) << summary;
  EXPECT_NE(summary.find(" handler_runs=100 "), std::string::npos) << summary;

  // The three copies of the garbage line are dead letters (one per copy:
  // nothing identifies them as the same event).
  auto letters = idem::test::stream_messages(*conn_, stream_ + "_DLQ");
  ASSERT_EQ(letters.size(), 3U);
  for (const auto& m : letters) {
    EXPECT_EQ(m.data, "not json at all");
    EXPECT_EQ(m.header("Idem-Dead-Letter-Reason"), "undecodable");
    EXPECT_EQ(m.header("Idem-Original-Subject"), subject_);
  }
}

TEST_F(NatsWorkerTest, WorkerKilledMidHandlerIsTakenOverWithAHigherToken) {
  auto slow = start_worker({"--handler-delay-ms", "60000"});
  ASSERT_EQ(publish(write_events(1), 1), 0);
  auto c = checker();
  std::optional<idem::IdempotencyRecord> first;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = c->get_processing_record("evt-0");
        if (r && *r && (*r)->status == idem::ProcessingStatus::kProcessing) first = **r;
        return first.has_value();
      },
      10s));
  slow->kill();  // SIGKILL, mid-handler: no effect, no completion

  auto taker = start_worker();
  ASSERT_TRUE(wait_until([&] { return read_ledger(ledger_).size() == 1 && drained(); }, 15s));
  const pid_t taker_pid = taker->pid();
  ASSERT_EQ(taker->terminate(), 0) << taker->err();

  const auto lines = read_ledger(ledger_);
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_EQ(lines[0].key, "evt-0");
  EXPECT_EQ(lines[0].pid, taker_pid);
  EXPECT_GT(lines[0].token, first->token) << "the takeover runs under a newer fencing token";
  auto record = c->get_processing_record("evt-0");
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->status, idem::ProcessingStatus::kCompleted);
  EXPECT_EQ((*record)->token, lines[0].token);
  EXPECT_EQ((*record)->attempt, 2U);
  EXPECT_NE(taker->out().find(" acked=1 "), std::string::npos) << taker->out();
}

// Three worker processes share the durable consumer and the store; one is
// SIGKILLed and restarted twice while 2,000 events x 3 copies flow. Every
// key lands in the ledger; a key appears twice only where a killed worker had
// written its line but not yet completed the record.
TEST_F(NatsWorkerTest, ThreeWorkersOneKilledAndRestartedTwiceLoseNothing) {
  constexpr int kEvents = 2000;
  // Most of each handler's time is spent after its effect, so kills often
  // land between effect and completion: the case that duplicates an effect.
  const std::vector<std::string> extra = {"--handler-delay-ms", "1", "--effect-delay-ms", "3"};
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(start_worker(extra, "3s"));
  std::string output;
  std::thread publisher([&] { EXPECT_EQ(publish(write_events(kEvents), 3, &output), 0) << output; });

  std::set<pid_t> killed;
  for (int round = 1; round <= 2; ++round) {
    const std::size_t target = static_cast<std::size_t>(kEvents * round / 3);
    ASSERT_TRUE(wait_until([&] { return read_ledger(ledger_).size() >= target; }, 60s)) << "round " << round;
    killed.insert(workers[0]->pid());
    workers[0]->kill();
    workers[0] = start_worker(extra, "3s");
  }
  publisher.join();
  ASSERT_TRUE(wait_until(
      [&] {
        std::set<std::string> keys;
        for (const auto& l : read_ledger(ledger_)) keys.insert(l.key);
        return keys.size() == kEvents && drained();
      },
      90s));
  for (auto& w : workers) EXPECT_EQ(w->terminate(), 0) << w->err();

  std::map<std::string, std::vector<LedgerLine>> by_key;
  for (const auto& l : read_ledger(ledger_)) by_key[l.key].push_back(l);
  ASSERT_EQ(by_key.size(), static_cast<std::size_t>(kEvents));
  auto c = checker();
  int duplicated = 0;
  for (const auto& [key, lines] : by_key) {
    auto record = c->get_processing_record(key);
    ASSERT_TRUE(record && *record) << key;
    ASSERT_EQ((*record)->status, idem::ProcessingStatus::kCompleted) << key;
    // The line of the run that completed carries the record's token; every
    // other line belongs to a worker that was killed before completing.
    int completing = 0;
    for (const auto& l : lines) {
      if (l.token == (*record)->token) {
        ++completing;
      } else {
        EXPECT_TRUE(killed.count(l.pid)) << key << ": extra line from pid " << l.pid << ", which was not killed";
        EXPECT_LT(l.token, (*record)->token) << key;
      }
    }
    EXPECT_EQ(completing, 1) << key;
    if (lines.size() > 1) ++duplicated;
  }
  std::cout << "[ nats ] 3 workers, " << kEvents << " events x 3 copies, 2 kills: " << duplicated
            << " keys ran twice (killed between effect and completion)\n";
  RecordProperty("duplicated_keys", duplicated);
}

TEST_F(NatsWorkerTest, LedgerTableArgumentsAreChecked) {
  auto run = [&](const std::string& store, std::vector<std::string> extra, std::string* output) {
    std::vector<std::string> args = {IDEM_CLI_PATH, "nats-worker", "--nats",     server().url(),
                                     "--stream",    stream_,       "--subjects", subject_,
                                     "--consumer",  "w",           "--store",    store};
    args.insert(args.end(), extra.begin(), extra.end());
    return idem::test::run_command(args, output);
  };
  std::string output;
  EXPECT_EQ(run(store_url_, {"--ledger-table", "ledger"}, &output), 2) << output;
  EXPECT_NE(output.find("needs a postgresql:// store"), std::string::npos) << output;
  EXPECT_EQ(run("postgresql://u:pw@127.0.0.1:1/db", {"--ledger-table", "ledger; DROP TABLE x"}, &output), 2) << output;
  EXPECT_NE(output.find("must be a table name"), std::string::npos) << output;
  EXPECT_EQ(run("postgresql://u:pw@127.0.0.1:1/db", {"--ledger-table", "ledger", "--ledger", ledger_}, &output), 2)
      << output;
  EXPECT_NE(output.find("exclude each other"), std::string::npos) << output;
}

#ifdef IDEM_NATS_TEST_HAVE_POSTGRES
// Exactly once with --ledger-table: 60 events published 3 times; a first
// worker is SIGKILLed while its handlers sit between the insert and the
// commit (their rows vanish with the rollback), a second one while its
// handlers sit after the commit and before the ack (their rows stay, the
// redeliveries are completed duplicates), then two workers finish the
// stream. Every key has exactly one row, written under the token the record
// was completed with.
TEST_F(NatsWorkerTest, LedgerTableOnPostgresIsExactlyOnceAcrossKills) {
  if (!idem::test::postgres_available()) IDEM_SKIP_OR_FAIL("PostgreSQL 15 not found");
  std::string err;
  auto pg = idem::test::PostgresServer::start({}, &err);
  ASSERT_TRUE(pg) << err;
  const std::string store = pg->url("schema=nats_tx");
  store_args_ = {"--store", store, "--ledger-table", "ledger"};
  auto count = [&](const std::string& sql) { return std::stoi(pg->exec(sql).value_or("-1")); };
  auto rows = [&] { return count("SELECT count(*) FROM ledger"); };

  constexpr int kEvents = 60;
  // 1. Killed between the insert and the commit: its sessions are idle in
  //    a transaction that holds the inserted rows. (The first worker creates
  //    the stream, so it starts before the publisher.)
  auto first = start_worker({"--effect-delay-ms", "60000"}, "2s");
  std::string output;
  ASSERT_EQ(publish(write_events(kEvents), 3, &output), 0) << output;
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") >= 4; }, 15s))
      << first->err();
  const pid_t first_pid = first->pid();
  first->kill();
  std::cout << "[ nats ] killed pid " << first_pid << " with 4 handlers between insert and commit\n";

  // 2. Killed after the commit, before the ack.
  auto second = start_worker({"--ack-delay-ms", "60000"}, "2s");
  ASSERT_TRUE(wait_until([&] { return rows() >= 4; }, 20s)) << second->err();
  const pid_t second_pid = second->pid();
  second->kill();
  const int committed_unacked = rows();
  std::cout << "[ nats ] killed pid " << second_pid << " with " << committed_unacked
            << " rows committed and not acked\n";

  // 3. Two workers finish the stream.
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < 2; ++i) workers.push_back(start_worker({}, "2s"));
  ASSERT_TRUE(wait_until([&] { return rows() >= kEvents && drained(); }, 60s)) << "rows: " << rows() << "\n"
                                                                               << workers[0]->err();
  std::uint64_t duplicates = 0;
  for (auto& w : workers) {
    EXPECT_EQ(w->terminate(), 0) << w->err();
    const std::string out = w->out();
    const auto at = out.find(" duplicates=");
    if (at != std::string::npos) duplicates += std::stoull(out.substr(at + 12));
  }
  EXPECT_GT(duplicates, 0u) << "the copies and the committed-but-unacked messages are completed duplicates";

  EXPECT_EQ(rows(), kEvents) << "one row per key, however the workers died";
  EXPECT_EQ(count("SELECT count(DISTINCT idem_key) FROM ledger"), kEvents);
  EXPECT_EQ(count("SELECT count(*) FROM ledger WHERE pid = " + std::to_string(first_pid)), 0)
      << "rows of handlers killed before their commit were rolled back";
  EXPECT_EQ(count("SELECT count(*) FROM ledger WHERE pid = " + std::to_string(second_pid)), committed_unacked)
      << "rows committed before the kill stay, and their keys never ran again";
  auto checker = idem::IdempotencyChecker::from_url(store).value();
  std::istringstream lines(pg->exec("SELECT idem_key, token FROM ledger").value_or(""));
  int checked = 0;
  for (std::string line; std::getline(lines, line); ++checked) {
    const std::string key = line.substr(0, line.find('|'));
    const idem::Token token = std::stoull(line.substr(line.find('|') + 1));
    auto record = checker->get_processing_record(key);
    ASSERT_TRUE(record && *record) << key;
    EXPECT_EQ((*record)->status, idem::ProcessingStatus::kCompleted) << key;
    EXPECT_EQ((*record)->token, token) << key << ": the row and the completion commit under one token";
  }
  EXPECT_EQ(checked, kEvents);
}
#endif

}  // namespace
