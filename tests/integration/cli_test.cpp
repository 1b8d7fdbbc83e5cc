// Runs the real `idem` binary against SQLite files seeded through the library
// (and memory:// where one process suffices, as in bench), and checks its
// output, JSON and exit codes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/processor.h"
#include "idem/stores/sqlite.h"
#include "unit/prometheus_checker.h"

#if defined(IDEM_TEST_REDIS) || defined(IDEM_TEST_POSTGRES)
#include <functional>
#include <thread>
#endif
#ifdef IDEM_TEST_REDIS
#include "integration/redis_support.h"
#endif
#ifdef IDEM_TEST_POSTGRES
#include "idem/stores/postgres.h"
#include "support/postgres_server.h"
#endif

extern char** environ;

namespace idem {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs `idem args...` with stdin from /dev/null (never a terminal), stdout and
// stderr captured, IDEM_STORE_URL replaced by `store_env` (unset when empty).
CliRun run_idem(const std::vector<std::string>& args, const std::string& store_env = "") {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path();
  const fs::path out = dir / ("idem-cli-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".out");
  const fs::path err = fs::path(out).replace_extension(".err");

  std::vector<std::string> argv_storage{IDEM_CLI_PATH};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("IDEM_STORE_URL=")) continue;
    env_storage.emplace_back(*e);
  }
  if (!store_env.empty()) env_storage.push_back("IDEM_STORE_URL=" + store_env);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  CliRun run;
  if (posix_spawn(&pid, IDEM_CLI_PATH, &actions, nullptr, argv.data(), envp.data()) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  run.out = slurp(out);
  run.err = slurp(err);
  fs::remove(out);
  fs::remove(err);
  return run;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(json::parse(line));
  }
  return lines;
}

int count_lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

Envelope event(std::string id) {
  Envelope e;
  e.event_id = std::move(id);
  e.event_type = "order.created";
  return e;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("idem-cli-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    url_ = "sqlite://" + (dir_ / "idem.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Seeds, through the library:
  //   billing:done   COMPLETED with result {"ok":true}
  //   billing:bad    FAILED, terminal
  //   billing:stale  PROCESSING, claimed 2h ago with a 30s lease (long dead)
  //   billing:live   PROCESSING with a live lease
  //   billing:n0..n{extra-1}  COMPLETED
  void seed(int extra = 0) {
    CheckerOptions options;
    options.key.scope = "billing";
    {
      // Claimed 2h ago with a 30s lease by a worker that then died: the
      // manual API leaves the record PROCESSING, as a crash would.
      auto past = std::make_shared<ManualClock>(Timestamp(std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch() - std::chrono::hours(2))));
      auto old_store = SqliteStore::create({.path = (dir_ / "idem.db").string(), .clock = past}).value();
      options.lease = std::chrono::seconds(30);
      auto claim = IdempotencyChecker(old_store, options).claim(event("stale")).value();
      ASSERT_TRUE(claim.outcome.acquired());
      stale_token_ = claim.outcome.token;
    }
    store_ = SqliteStore::create({.path = (dir_ / "idem.db").string()}).value();
    options.lease = std::chrono::minutes(5);
    auto checker = std::make_shared<IdempotencyChecker>(store_, options);
    processor_ = std::make_unique<IdempotentEventProcessor>(checker, ProcessorOptions{.heartbeat = false});
    processor_->process(event("done")).mark_completed(R"({"ok":true})");
    processor_->process(event("bad")).mark_failed("card declined", FailureKind::kTerminal);
    ASSERT_TRUE(checker->claim(event("live")).value().outcome.acquired());
    for (int i = 0; i < extra; ++i) processor_->process(event("n" + std::to_string(i))).mark_completed("1");
  }

  static std::string key(std::string_view id) { return "idempotency:events:billing:" + std::string(id); }

  fs::path dir_;
  std::string url_;
  std::shared_ptr<Store> store_;
  std::unique_ptr<IdempotentEventProcessor> processor_;
  Token stale_token_ = 0;
};

TEST_F(CliTest, GetShowsRecordLeaseAndTtl) {
  seed();
  CliRun run = run_idem({"get", key("done"), "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  json record = json::parse(run.out);
  EXPECT_EQ(record["status"], "COMPLETED");
  EXPECT_EQ(record["result"], R"({"ok":true})");
  EXPECT_EQ(record["event_type"], "order.created");
  EXPECT_EQ(record["lease"]["state"], "none");
  EXPECT_GT(record["ttl_remaining_ms"].get<std::int64_t>(), 23 * 3600 * 1000);

  run = run_idem({"get", key("live"), "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  record = json::parse(run.out);
  EXPECT_EQ(record["lease"]["state"], "held");
  EXPECT_GT(record["lease"]["remaining_ms"].get<std::int64_t>(), 0);

  run = run_idem({"get", key("stale"), "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["lease"]["state"], "expired");

  // A raw key plus its scope finds the same record; readable output.
  run = run_idem({"get", "bad", "--scope", "billing", "--store", url_});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("FAILED (terminal)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("card declined"), std::string::npos) << run.out;
}

TEST_F(CliTest, GetMissingKeyExitsFourWithOneLine) {
  seed();
  CliRun run = run_idem({"get", "nope", "--store", url_});
  EXPECT_EQ(run.code, 4);
  EXPECT_EQ(count_lines(run.err), 1) << run.err;
  EXPECT_NE(run.err.find("no record"), std::string::npos);
  EXPECT_TRUE(run.out.empty());
}

TEST_F(CliTest, StoreComesFromTheEnvironment) {
  seed();
  CliRun run = run_idem({"get", key("done"), "--json"}, url_);
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["status"], "COMPLETED");
}

TEST_F(CliTest, ListStreamsAndFilters) {
  seed(10);
  // Small pages force the cursor through several round trips.
  CliRun run = run_idem({"list", "--store", url_, "--json", "--page-size", "3"});
  ASSERT_EQ(run.code, 0) << run.err;
  auto records = json_lines(run.out);
  ASSERT_EQ(records.size(), 14u);
  std::set<std::string> keys;
  for (const auto& r : records) keys.insert(r["key"].get<std::string>());
  EXPECT_EQ(keys.size(), 14u) << "a page boundary repeated or lost records";
  EXPECT_TRUE(run.err.empty()) << "no progress line when stderr is not a terminal: " << run.err;

  run = run_idem({"list", "--store", url_, "--json", "--status", "processing", "--page-size", "2"});
  ASSERT_EQ(run.code, 0) << run.err;
  records = json_lines(run.out);
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) EXPECT_EQ(r["status"], "PROCESSING");

  run = run_idem({"list", "--store", url_, "--json", "--older-than", "1h"});
  ASSERT_EQ(run.code, 0) << run.err;
  records = json_lines(run.out);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["key"], key("stale"));

  run = run_idem({"list", "--store", url_, "--json", "--limit", "4", "--page-size", "3"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json_lines(run.out).size(), 4u);

  run = run_idem({"list", "--store", url_, "--json", "--prefix", key("n1")});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json_lines(run.out).size(), 1u);

  run = run_idem({"list", "--store", url_, "--status", "FAILED"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(count_lines(run.out), 2) << run.out;  // header + one record
  EXPECT_NE(run.out.find(key("bad")), std::string::npos);
}

TEST_F(CliTest, DeleteNeedsConfirmation) {
  seed();
  CliRun run = run_idem({"delete", key("done"), "--store", url_});
  EXPECT_EQ(run.code, 2);
  EXPECT_EQ(count_lines(run.err), 1) << run.err;
  EXPECT_NE(run.err.find("--yes"), std::string::npos);
  ASSERT_TRUE(store_->get(key("done")).value().has_value()) << "deleted without confirmation";

  run = run_idem({"delete", key("done"), "--store", url_, "--yes", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["deleted"], true);
  EXPECT_FALSE(store_->get(key("done")).value().has_value());

  run = run_idem({"delete", key("done"), "--store", url_, "--yes"});
  EXPECT_EQ(run.code, 4);
}

TEST_F(CliTest, SweepReclaimsOnlyLongDeadLeases) {
  seed();
  CliRun run = run_idem({"sweep", "--store", url_, "--dry-run", "--older-than", "1h", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  json report = json::parse(run.out);
  EXPECT_EQ(report["stale_found"], 1);
  EXPECT_EQ(report["reclaimed"], 0);
  EXPECT_EQ(store_->get(key("stale")).value()->status, ProcessingStatus::kProcessing) << "dry run changed the store";

  run = run_idem({"sweep", "--store", url_, "--older-than", "3h", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["stale_found"], 0) << "lease expired 2h ago is not older than 3h";

  run = run_idem({"sweep", "--store", url_, "--older-than", "1h", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  report = json::parse(run.out);
  EXPECT_EQ(report["reclaimed"], 1);
  EXPECT_EQ(report["expired_removed"], 0);
  auto stale = store_->get(key("stale")).value();
  ASSERT_TRUE(stale.has_value());
  EXPECT_EQ(stale->status, ProcessingStatus::kFailed);
  EXPECT_TRUE(stale->retryable);
  EXPECT_EQ(stale->error, "reclaimed by idem sweep");
  // The live lease is untouched.
  EXPECT_EQ(store_->get(key("live")).value()->status, ProcessingStatus::kProcessing);
  // The next delivery runs the handler again, as a retry.
  auto ctx = processor_->process(event("stale"));
  EXPECT_TRUE(ctx.should_process());
  EXPECT_EQ(ctx.acquire_kind(), AcquireKind::kRetry);
  EXPECT_GT(ctx.token(), stale_token_);
  ctx.mark_completed("2");
}

TEST_F(CliTest, StatsCountsByStatus) {
  seed(3);
  CliRun run = run_idem({"stats", "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  json stats = json::parse(run.out);
  EXPECT_EQ(stats["processing"], 2);
  EXPECT_EQ(stats["completed"], 4);
  EXPECT_EQ(stats["failed"], 1);
  EXPECT_EQ(stats["total"], 7);
  EXPECT_EQ(stats["store_kind"], "sqlite");
  EXPECT_EQ(stats["oldest_processing"]["key"], key("stale"));
  EXPECT_GT(stats["bytes"].get<std::int64_t>(), 0);
}

TEST_F(CliTest, HealthExitCodes) {
  seed();
  CliRun run = run_idem({"stats", "--health", "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  json health = json::parse(run.out);
  EXPECT_EQ(health["healthy"], true);
  EXPECT_EQ(health["store_kind"], "sqlite");

  run = run_idem({"stats", "--health", "--store", "redis://127.0.0.1:1"});
  EXPECT_EQ(run.code, 3) << run.out << run.err;
  EXPECT_NE(run.out.find("unhealthy"), std::string::npos);
  run = run_idem({"stats", "--health", "--store", "nosuch://x", "--json"});
  EXPECT_EQ(run.code, 3);
  EXPECT_EQ(json::parse(run.out)["healthy"], false);
}

// Issue 7 item 8: a mistyped path is reported, never turned into an empty
// store that reports zero records.
TEST_F(CliTest, InspectionCommandsCreateNothing) {
  const fs::path missing = dir_ / "no" / "such" / "dir" / "x.db";
  const std::string url = "sqlite://" + missing.string();
  for (const auto& args : std::vector<std::vector<std::string>>{{"stats", "--store", url},
                                                                {"stats", "--store", url, "--json"},
                                                                {"get", "some-key", "--store", url},
                                                                {"list", "--store", url},
                                                                {"list", "--store", url, "--json"}}) {
    CliRun run = run_idem(args);
    EXPECT_EQ(run.code, 1) << args[0] << ": " << run.out << run.err;
    EXPECT_EQ(count_lines(run.err), 1) << run.err;
    EXPECT_NE(run.err.find("nothing exists at"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty() || run.out.find("STATUS") == 0) << run.out;
    EXPECT_FALSE(fs::exists(dir_ / "no")) << args[0] << " created " << (dir_ / "no");
  }
  CliRun health = run_idem({"stats", "--health", "--store", url});
  EXPECT_EQ(health.code, 3) << health.out << health.err;
  EXPECT_FALSE(fs::exists(dir_ / "no"));
  // A named memory store does not exist in a fresh process either.
  CliRun named = run_idem({"stats", "--store", "memory://orders"});
  EXPECT_EQ(named.code, 1) << named.out << named.err;
  EXPECT_NE(named.err.find("no store named 'orders'"), std::string::npos) << named.err;
}

// delete and sweep change existing records: like the inspection commands,
// a mistyped path must create nothing (they used to create an empty store).
TEST_F(CliTest, DeleteAndSweepCreateNothing) {
  const fs::path missing = dir_ / "no" / "such" / "dir" / "x.db";
  const std::string url = "sqlite://" + missing.string();
  for (const auto& args : std::vector<std::vector<std::string>>{{"delete", "some-key", "--yes", "--store", url},
                                                                {"sweep", "--store", url},
                                                                {"sweep", "--dry-run", "--store", url, "--json"}}) {
    CliRun run = run_idem(args);
    EXPECT_EQ(run.code, 1) << args[0] << ": " << run.out << run.err;
    EXPECT_EQ(count_lines(run.err), 1) << run.err;
    EXPECT_NE(run.err.find("nothing exists at"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
    EXPECT_FALSE(fs::exists(dir_ / "no")) << args[0] << " created " << (dir_ / "no");
  }
  // A file that exists is still changed as before.
  seed();
  EXPECT_EQ(run_idem({"delete", key("done"), "--yes", "--store", url_}).code, 0);
  EXPECT_EQ(run_idem({"sweep", "--store", url_}).code, 0);
}

TEST_F(CliTest, UsageErrorsExitTwoWithOneLine) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"list", "--older-than", "5x"},
                                                                {"list", "--older-than", "999999999999d"},
                                                                {"list", "--bogus"},
                                                                {"get"},
                                                                {},
                                                                {"list", "--status", "DONE", "--store", url_}}) {
    CliRun run = run_idem(args);
    EXPECT_EQ(run.code, 2) << run.err;
    EXPECT_EQ(count_lines(run.err), 1) << run.err;
  }
  CliRun run = run_idem({"stats", "--store", "nosuch://x"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(count_lines(run.err), 1) << run.err;
}

TEST_F(CliTest, BenchOnMemoryRunsEachKeyOnce) {
  const std::string metrics = (dir_ / "metrics.prom").string();
  CliRun run = run_idem({"bench", "--store", "memory://", "--events", "3000", "--concurrency", "4", "--duplicate-ratio",
                         "0.3", "--json", "--metrics-out", metrics});
  ASSERT_EQ(run.code, 0) << run.err;
  json result = json::parse(run.out);
  EXPECT_EQ(result["events"], 3000);
  EXPECT_EQ(result["executions_equal_unique_keys"], true);
  EXPECT_EQ(result["handler_executions"], result["unique_keys"]);
  EXPECT_EQ(result["keys_run_more_than_once"], 0);
  EXPECT_EQ(result["errors"], 0);
  const auto unique = result["unique_keys"].get<int>();
  EXPECT_GT(unique, 1800);  // about 70% of 3000
  EXPECT_LT(unique, 2400);
  EXPECT_EQ(result["duplicates_replayed"].get<int>() + result["duplicates_in_progress"].get<int>() +
                result["duplicates_other"].get<int>(),
            3000 - unique);
  EXPECT_GT(result["events_per_s"].get<double>(), 0);
  EXPECT_LE(result["latency_us"]["p50"].get<double>(), result["latency_us"]["p99"].get<double>());
  EXPECT_LE(result["latency_us"]["p99"].get<double>(), result["latency_us"]["p999"].get<double>());
  EXPECT_GT(result["store_calls_per_event"].get<double>(), 1.0);

  // The run's own metrics: valid text, and they agree with the report.
  auto check = testing::check_prometheus_text(slurp(metrics));
  ASSERT_TRUE(check.ok()) << check.describe();
  double news = 0;
  for (const auto& s : check.samples) {
    if (s.name == "idem_new_total") news += s.value;
  }
  EXPECT_EQ(news, unique);
}

TEST_F(CliTest, BenchOnSqliteWithTheWrapperAndBatches) {
  for (const auto& extra : std::vector<std::vector<std::string>>{{"--api", "wrapper"}, {"--batch", "16"}}) {
    std::vector<std::string> args{"bench", "--store", url_, "--events", "400", "--concurrency", "3", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = run_idem(args);
    ASSERT_EQ(run.code, 0) << run.err;
    json result = json::parse(run.out);
    EXPECT_EQ(result["executions_equal_unique_keys"], true) << run.out;
    EXPECT_EQ(result["handler_executions"], result["unique_keys"]);
  }
  // Bench cleans up after itself.
  CliRun run = run_idem({"stats", "--store", url_, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["total"], 0);
}

// Issue 16 item 5: on a shared store the bench looks at its own records
// only. Here the file holds other live records and a lot of free pages (the
// remains of deleted records): the bench's records fit in the free pages,
// so the old before/after file size said they cost nothing. The estimate from
// the bench's own records says what one record costs, and every other record
// is left as it was.
TEST_F(CliTest, BenchOnASharedStoreMeasuresOnlyItsOwnRecords) {
  seed(50);
  {
    auto checker = std::make_shared<IdempotencyChecker>(store_);
    IdempotentEventProcessor processor(checker, {.heartbeat = false});
    const std::string big(4096, 'x');
    for (int i = 0; i < 1500; ++i) processor.process(event("old" + std::to_string(i))).mark_completed(big);
    for (int i = 0; i < 1500; ++i) ASSERT_TRUE(checker->delete_record("old" + std::to_string(i)).value());
  }
  CliRun before = run_idem({"stats", "--store", url_, "--json"});
  ASSERT_EQ(before.code, 0) << before.err;
  for (const auto& extra : std::vector<std::vector<std::string>>{{}, {"--api", "async", "--inflight", "8"}}) {
    std::vector<std::string> args{"bench", "--store", url_, "--events", "300", "--result-bytes", "64", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = run_idem(args);
    ASSERT_EQ(run.code, 0) << run.err;
    json result = json::parse(run.out);
    EXPECT_EQ(result["executions_equal_unique_keys"], true) << run.out;
    ASSERT_TRUE(result["bytes_per_record"].is_number()) << run.out;
    // A record holds at least its key and its 64-byte result; far less
    // than a page of other people's data.
    EXPECT_GE(result["bytes_per_record"].get<double>(), 64 + 40) << run.out;
    EXPECT_LE(result["bytes_per_record"].get<double>(), 1000) << run.out;
    EXPECT_EQ(result["cleanup_failures"], 0);
  }
  CliRun after = run_idem({"stats", "--store", url_, "--json"});
  ASSERT_EQ(after.code, 0) << after.err;
  for (const char* field : {"processing", "completed", "failed"}) {
    EXPECT_EQ(json::parse(after.out)[field], json::parse(before.out)[field]) << field;
  }
}

TEST_F(CliTest, BenchAsyncRunsEachKeyOnceOnEveryEmbeddedStore) {
  for (const std::string& url : {std::string("memory://"), url_}) {
    CliRun run = run_idem({"bench", "--store", url, "--api", "async", "--inflight", "32", "--events", "2000",
                           "--concurrency", "2", "--duplicate-ratio", "0.3", "--json"});
    ASSERT_EQ(run.code, 0) << url << ": " << run.err;
    json result = json::parse(run.out);
    EXPECT_EQ(result["api"], "guard.process_async");
    EXPECT_EQ(result["inflight"], 32);
    EXPECT_EQ(result["executions_equal_unique_keys"], true) << run.out;
    EXPECT_EQ(result["errors"], 0) << run.out;
    EXPECT_EQ(result["duplicates_replayed"].get<int>() + result["duplicates_in_progress"].get<int>() +
                  result["duplicates_other"].get<int>(),
              2000 - result["unique_keys"].get<int>());
  }
  CliRun run = run_idem({"bench", "--store", "memory://", "--api", "async", "--batch", "4"});
  EXPECT_EQ(run.code, 2) << run.err;
}

#if defined(IDEM_TEST_REDIS) || defined(IDEM_TEST_POSTGRES)
// Every subcommand against a network store at `url`: seeds records through
// the library (a dead lease, completed, terminal, live, 30 more completed,
// plus what `seed_more` adds), then lists, reads, counts, sweeps, deletes,
// probes and benchmarks through the `idem` binary. `kind` is the store's
// kind() as `stats` reports it.
void check_every_subcommand(const std::string& url, std::string_view kind,
                            const std::function<void(Store&)>& seed_more = {}, std::int64_t expired_removed = 0) {
  auto store = open_store(url).value();
  CheckerOptions options;
  options.key.scope = "billing";
  options.lease = std::chrono::milliseconds(300);
  {
    IdempotencyChecker short_lease(store, options);
    ASSERT_TRUE(short_lease.claim(event("stale")).value().outcome.acquired());
  }
  options.lease = std::chrono::minutes(5);
  auto checker = std::make_shared<IdempotencyChecker>(store, options);
  IdempotentEventProcessor processor(checker, {.heartbeat = false});
  processor.process(event("done")).mark_completed(R"({"ok":true})");
  processor.process(event("bad")).mark_failed("card declined", FailureKind::kTerminal);
  ASSERT_TRUE(checker->claim(event("live")).value().outcome.acquired());
  for (int i = 0; i < 30; ++i) processor.process(event("n" + std::to_string(i))).mark_completed("1");
  if (seed_more) seed_more(*store);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the stale lease is now 1.2s dead
  const std::string key_prefix = "idempotency:events:billing:";

  CliRun run = run_idem({"list", "--store", url, "--json", "--page-size", "5"});
  ASSERT_EQ(run.code, 0) << run.err;
  auto records = json_lines(run.out);
  std::set<std::string> keys;
  for (const auto& r : records) keys.insert(r["key"].get<std::string>());
  EXPECT_EQ(records.size(), 34u);
  EXPECT_EQ(keys.size(), 34u);

  run = run_idem({"list", "--store", url, "--json", "--status", "PROCESSING"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json_lines(run.out).size(), 2u);

  run = run_idem({"get", key_prefix + "done", "--store", url, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["status"], "COMPLETED");
  EXPECT_GT(json::parse(run.out)["ttl_remaining_ms"].get<std::int64_t>(), 0);

  run = run_idem({"stats", "--store", url, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  json stats = json::parse(run.out);
  EXPECT_EQ(stats["processing"], 2);
  EXPECT_EQ(stats["completed"], 31);
  EXPECT_EQ(stats["failed"], 1);
  EXPECT_EQ(stats["store_kind"], std::string(kind));

  run = run_idem({"sweep", "--store", url, "--older-than", "1s", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["reclaimed"], 1) << run.out;
  EXPECT_EQ(json::parse(run.out)["expired_removed"], expired_removed) << run.out;
  run = run_idem({"get", "stale", "--scope", "billing", "--store", url, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["status"], "FAILED");
  run = run_idem({"get", "live", "--scope", "billing", "--store", url, "--json"});
  EXPECT_EQ(json::parse(run.out)["status"], "PROCESSING");

  run = run_idem({"delete", key_prefix + "done", "--store", url, "--yes"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run_idem({"get", key_prefix + "done", "--store", url}).code, 4);

  EXPECT_EQ(run_idem({"stats", "--health", "--store", url}).code, 0);
  for (const auto& extra :
       std::vector<std::vector<std::string>>{{}, {"--batch", "8"}, {"--api", "async", "--inflight", "16"}}) {
    std::vector<std::string> args{"bench", "--store", url, "--events", "600", "--concurrency", "4", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    run = run_idem(args);
    ASSERT_EQ(run.code, 0) << run.err;
    EXPECT_EQ(json::parse(run.out)["executions_equal_unique_keys"], true) << run.out;
  }
}
#endif

#ifdef IDEM_TEST_REDIS
// The same subcommands against a real redis-server: listing goes through
// SCAN (the test checks that KEYS is never sent), and reclaiming works with
// the server's clock.
TEST(CliRedisTest, EverySubcommandWorks) {
  if (test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string error;
  auto server = test::RedisServer::start({}, &error);
  ASSERT_TRUE(server) << error;
  check_every_subcommand(server->url(), "redis");
  EXPECT_GT(server->stat_calls("scan"), 0u) << "the statistics read nothing: the next check would prove nothing";
  EXPECT_EQ(server->stat_calls("keys"), 0u) << "the CLI must page with SCAN, never KEYS";
}

// Issue 16 item 5: a bench on a shared Redis must not walk the keyspace (it
// used to call stats(), a SCAN over every record, before and after the run),
// and a store that does not answer is reported with its own error.
TEST(CliRedisTest, BenchOnASharedStoreReadsNoOtherRecord) {
  if (test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string error;
  auto server = test::RedisServer::start({}, &error);
  ASSERT_TRUE(server) << error;
  const std::string url = server->url();
  {
    auto checker = std::make_shared<IdempotencyChecker>(open_store(url).value());
    IdempotentEventProcessor processor(checker, {.heartbeat = false});
    for (int i = 0; i < 300; ++i) processor.process(event("other" + std::to_string(i))).mark_completed("1");
  }
  const std::uint64_t scans = server->stat_calls("scan");
  for (const auto& extra : std::vector<std::vector<std::string>>{{}, {"--api", "async", "--inflight", "16"}}) {
    std::vector<std::string> args{"bench", "--store", url, "--events", "200", "--concurrency", "2", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = run_idem(args);
    ASSERT_EQ(run.code, 0) << run.err;
    EXPECT_EQ(json::parse(run.out)["executions_equal_unique_keys"], true) << run.out;
  }
  EXPECT_EQ(server->stat_calls("scan"), scans) << "the bench walked the store";
  EXPECT_EQ(server->stat_calls("keys"), 0u);

  CliRun dead = run_idem({"bench", "--store", "redis://127.0.0.1:1", "--events", "10"});
  EXPECT_EQ(dead.code, 1) << dead.err;
  EXPECT_NE(dead.err.find("does not answer"), std::string::npos) << dead.err;
  EXPECT_EQ(dead.err.find("circuit"), std::string::npos) << dead.err;

  // Issue 16 item 4: an ACL user without DEL cannot clean up after the run;
  // the bench says so and fails instead of leaving its records silently.
  ASSERT_TRUE(server->command({"ACL", "SETUSER", "nodel", "on", ">pw", "~idempotency:*", "&*", "+@all", "-del"}));
  const std::string nodel = "redis://nodel:pw@127.0.0.1:" + std::to_string(server->port());
  CliRun kept = run_idem({"bench", "--store", nodel, "--events", "20"});
  EXPECT_EQ(kept.code, 1) << kept.err;
  EXPECT_NE(kept.err.find("could not be removed"), std::string::npos) << kept.err;
  EXPECT_NE(kept.err.find("'del'"), std::string::npos) << "the error must name the missing command: " << kept.err;
}
#endif

#ifdef IDEM_TEST_POSTGRES
// The same subcommands against a real PostgreSQL (postgresql:// URLs): list
// pages by key, stats counts by status and reports the table size, sweep
// deletes expired rows and reclaims dead leases, and the password never
// shows in the output.
TEST(CliPostgresTest, EverySubcommandWorks) {
  if (!test::postgres_available()) IDEM_SKIP_OR_FAIL("PostgreSQL 15 not found (set IDEM_PG_BINDIR)");
  std::string error;
  auto server = test::PostgresServer::start({}, &error);
  ASSERT_TRUE(server) << error;
  const std::string url = server->url("schema=cli");
  // One record already expired: only sweep removes it from the table.
  check_every_subcommand(
      url, "postgresql",
      [](Store& store) {
        ASSERT_TRUE(store
                        .claim({.key = "gone",
                                .event_id = "gone",
                                .lease = std::chrono::milliseconds(1),
                                .ttl = std::chrono::milliseconds(1)})
                        .value()
                        .acquired());
      },
      1);
  EXPECT_EQ(server->exec("SELECT count(*) FROM cli.records WHERE key = 'gone'"), std::optional<std::string>("0"));
  CliRun run = run_idem({"stats", "--store", url, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_GT(json::parse(run.out)["bytes"].get<std::int64_t>(), 0);

  // A wrong password: a clear error, and no password in it.
  std::string bad = url;
  bad.replace(bad.find(test::PostgresServer::kPassword), test::PostgresServer::kPassword.size(), "not-the-pw-42");
  run = run_idem({"stats", "--store", bad});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err.find("not-the-pw-42"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("***"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("password authentication failed"), std::string::npos) << run.err;
}
#endif

}  // namespace
}  // namespace idem
