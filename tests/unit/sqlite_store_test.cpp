// File: tests/unit/sqlite_store_test.cpp
//
// SqliteStore specifics: schema versioning, error mapping (read-only,
// corrupt, locked), persistence and the token floor across reopen, URL
// parsing, and time-driven behaviour with a ManualClock.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/clock.h"
#include "idem/stores/sqlite.h"

namespace idem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

ClaimRequest req(std::string_view key, milliseconds lease = 30s, milliseconds ttl = 3600s) {
  ClaimRequest r;
  r.key = key;
  r.event_id = "e";
  r.event_type = "t";
  r.lease = lease;
  r.ttl = ttl;
  return r;
}

CompleteRequest done(std::string_view key, Token token, std::string_view result = "ok", milliseconds ttl = 3600s) {
  CompleteRequest r;
  r.key = key;
  r.token = token;
  r.result = result;
  r.ttl = ttl;
  return r;
}

// Runs SQL on the file directly, as another program would.
void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "idem-sqlite-unit-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "idem.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Result<std::shared_ptr<Store>> open(const std::string& path) {
    SqliteStoreOptions o;
    o.path = path;
    o.clock = clock_;
    o.busy_timeout = 200ms;
    return SqliteStore::create(o);
  }
  std::shared_ptr<Store> open_ok() {
    Result<std::shared_ptr<Store>> s = open(path_);
    EXPECT_TRUE(s.ok()) << s.error().to_string();
    return s.ok() ? *s : nullptr;
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  fs::path dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, CreatesParentDirectoriesAndUsesWal) {
  const std::string nested = (dir_ / "a" / "b" / "c" / "idem.db").string();
  Result<std::shared_ptr<Store>> s = open(nested);
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_EQ((*s)->kind(), "sqlite");
  EXPECT_TRUE((*s)->ping().ok());
  EXPECT_TRUE(fs::exists(nested));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(nested.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, ReopenPersistsRecords) {
  Token token = 0;
  {
    auto store = open_ok();
    Result<ClaimOutcome> out = store->claim(req("k"));
    token = out->token;
    ASSERT_TRUE(store->complete(done("k", token, std::string("r\0esult", 7))).ok());
    ASSERT_TRUE(store->claim(req("p"))->acquired());
  }
  auto store = open_ok();
  Result<std::optional<IdempotencyRecord>> rec = store->get("k");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->status, ProcessingStatus::kCompleted);
  EXPECT_EQ((*rec)->result, std::string("r\0esult", 7));
  EXPECT_EQ((*rec)->token, token);
  EXPECT_EQ(store->claim(req("k"))->status, ClaimStatus::kCompleted);
  EXPECT_EQ(store->claim(req("p"))->status, ClaimStatus::kInProgress);
}

TEST_F(SqliteStoreTest, TokenFloorSurvivesReopen) {
  Token removed_token = 0;
  Token swept_token = 0;
  {
    auto store = open_ok();
    removed_token = store->claim(req("removed"))->token;
    ASSERT_TRUE(*store->remove("removed"));
    // Push the floor with a sweep of a high token too.
    for (int i = 0; i < 5; ++i) {
      Result<ClaimOutcome> out = store->claim(req("swept", 1s, 1s));
      ASSERT_TRUE(out.ok()) << out.error().to_string();
      swept_token = out->token;
      clock_->advance(2s);
    }
    EXPECT_EQ(store->sweep()->expired_removed, 1u);
  }
  auto store = open_ok();
  Result<ClaimOutcome> again = store->claim(req("removed"));
  ASSERT_TRUE(again.ok() && again->acquired());
  EXPECT_GT(again->token, removed_token);
  EXPECT_GT(again->token, swept_token) << "the floor is store-wide";
  Result<ClaimOutcome> swept = store->claim(req("swept"));
  ASSERT_TRUE(swept->acquired());
  EXPECT_EQ(swept->acquire_kind, AcquireKind::kNew);
  EXPECT_GT(swept->token, swept_token);
}

TEST_F(SqliteStoreTest, RefusesNewerSchema) {
  { auto store = open_ok(); }
  raw_exec(path_, "UPDATE meta SET value = 99 WHERE name = 'schema_version'");
  Result<std::shared_ptr<Store>> s = open(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidConfiguration);
  EXPECT_NE(s.error().message().find("schema version 99"), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("newer Idem"), std::string::npos) << s.error().message();
}

TEST_F(SqliteStoreTest, RefusesForeignMetaTable) {
  raw_exec(path_, "CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER)");
  Result<std::shared_ptr<Store>> s = open(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorrupt);
}

TEST_F(SqliteStoreTest, CorruptFileIsKCorrupt) {
  {
    std::ofstream f(path_, std::ios::binary);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>((i * 131 + 7) % 251));
  }
  Result<std::shared_ptr<Store>> s = open(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorrupt) << s.error().to_string();
  EXPECT_NE(s.error().message().find(path_), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("move it away"), std::string::npos) << s.error().message();
}

TEST_F(SqliteStoreTest, ReadOnlyFileIsKUnavailable) {
  { auto store = open_ok(); }
  // root ignores file modes, so when running as root the check runs in a
  // child that drops to an unprivileged user.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    fs::permissions(path_ + suffix, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
  }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    SqliteStoreOptions o;
    o.path = path_;
    o.busy_timeout = 100ms;
    Result<std::shared_ptr<Store>> s = SqliteStore::create(o);
    if (s.ok()) ::_exit(1);
    if (s.error().code() != ErrorCode::kUnavailable) ::_exit(2);
    if (s.error().message().find("writable") == std::string::npos) ::_exit(4);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: opened read-only file, 2: wrong code, 3: setuid failed, 4: message";
}

TEST_F(SqliteStoreTest, HeldWriteLockIsKTimeout) {
  auto store = open_ok();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const auto start = std::chrono::steady_clock::now();
  Result<ClaimOutcome> out = store->claim(req("k"));
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), ErrorCode::kTimeout) << out.error().to_string();
  EXPECT_TRUE(out.error().retryable());
  EXPECT_NE(out.error().message().find("busy_timeout"), std::string::npos);
  EXPECT_GE(waited, 150ms) << "busy_timeout was not honoured";
  // Reads still work under WAL while another process writes.
  EXPECT_TRUE(store->get("k").ok());
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_TRUE(store->claim(req("k"))->acquired());
}

// ReadSignallingClock is a ManualClock that tells a test when it was read,
// so the test can move time while a store call is known to be under way.
class ReadSignallingClock final : public Clock {
 public:
  Timestamp now() const noexcept override {
    const Timestamp t = clock_.now();  // before the signal: the reader has its value
    {
      std::lock_guard lock(mutex_);
      ++reads_;
    }
    read_.notify_all();
    return t;
  }
  void advance(milliseconds by) noexcept { clock_.advance(by); }
  // wait_read() waits until the clock was read, at most `timeout`.
  bool wait_read(milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return read_.wait_for(lock, timeout, [&] { return reads_ > 0; });
  }
  void reset() {
    std::lock_guard lock(mutex_);
    reads_ = 0;
  }

 private:
  ManualClock clock_;
  mutable std::mutex mutex_;
  mutable std::condition_variable read_;
  mutable int reads_ = 0;
};

// A claim that waits for the write lock must take "now" once it holds it:
// a claim that read the clock first and then waited longer than its lease
// would hand out a lease that has already run out, and a second worker could
// take the key over at once. Another connection holds the write lock while
// time moves on by more than the lease. If the store reads the clock before
// waiting, the test sees that read before moving time, so the bug shows
// every time; a store that reads it after the lock reads the moved clock
// however the threads are scheduled.
TEST_F(SqliteStoreTest, ClaimThatWaitedForTheWriteLockGetsAFullLease) {
  auto clock = std::make_shared<ReadSignallingClock>();
  SqliteStoreOptions o;
  o.path = path_;
  o.clock = clock;
  o.busy_timeout = 30s;
  Result<std::shared_ptr<Store>> opened = SqliteStore::create(o);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::shared_ptr<Store> store = *opened;
  const ClaimRequest single = req("waited", 1s);
  std::vector<std::string> batch_keys;
  for (int i = 0; i < 40; ++i) batch_keys.push_back("batch-" + std::to_string(i));
  std::vector<ClaimRequest> batch;
  for (const std::string& key : batch_keys) batch.push_back(req(key, 1s));

  for (const bool many : {false, true}) {
    SCOPED_TRACE(many ? "claim_many" : "claim");
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    clock->reset();
    std::vector<ClaimOutcome> outs;
    std::string error;
    std::thread claimer([&] {
      if (many) {
        auto r = store->claim_many(batch);
        if (r) outs = *r;
        if (!r) error = r.error().to_string();
      } else {
        auto r = store->claim(single);
        if (r) outs.push_back(*r);
        if (!r) error = r.error().to_string();
      }
    });
    (void)clock->wait_read(300ms);  // the old store reads the clock before it waits
    clock->advance(10s);            // the claim waits ten times its lease
    const Timestamp released_at = clock->now();
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    claimer.join();
    sqlite3_close(db);
    ASSERT_TRUE(error.empty()) << error;
    ASSERT_FALSE(outs.empty());
    for (const ClaimOutcome& out : outs) {
      ASSERT_TRUE(out.acquired());
      EXPECT_GE(out.lease_expires_at, released_at + 1s) << "the lease had already run out when the claim returned";
    }
    // A second worker finds the key in progress, not free to take over.
    auto again = store->claim(many ? batch.front() : single);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->status, ClaimStatus::kInProgress);
  }
}

TEST_F(SqliteStoreTest, OpenParsesUrls) {
  Result<std::shared_ptr<Store>> abs = SqliteStore::open("sqlite://" + path_ + "?busy_timeout_ms=250&fsync=full");
  ASSERT_TRUE(abs.ok()) << abs.error().to_string();
  EXPECT_TRUE(fs::exists(path_));

  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  Result<std::shared_ptr<Store>> rel = SqliteStore::open("sqlite://rel/idem.db?max_connections=2&fsync=normal");
  fs::current_path(cwd);
  ASSERT_TRUE(rel.ok()) << rel.error().to_string();
  EXPECT_TRUE(fs::exists(dir_ / "rel" / "idem.db"));

  struct Bad {
    std::string url;
    const char* mentions;
  };
  for (const Bad& bad : {Bad{"sqlite:/x.db", "scheme"}, Bad{"sqlite://", "no database path"},
                         Bad{"sqlite://" + path_ + "?fsync=maybe", "fsync"},
                         Bad{"sqlite://" + path_ + "?busy_timeout_ms=-5", "busy_timeout_ms"},
                         Bad{"sqlite://" + path_ + "?busy_timeout_ms", "no value"},
                         Bad{"sqlite://" + path_ + "?max_connections=0", "max_connections"},
                         Bad{"sqlite://" + path_ + "?journal=off", "journal"}}) {
    Result<std::shared_ptr<Store>> s = SqliteStore::open(bad.url);
    ASSERT_FALSE(s.ok()) << bad.url;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidConfiguration) << bad.url;
    EXPECT_NE(s.error().message().find(bad.mentions), std::string::npos) << s.error().message();
  }
  SqliteStoreOptions empty;
  Result<std::shared_ptr<Store>> none = SqliteStore::create(empty);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::kInvalidConfiguration);
}

// Issue 7 item 8: opening without create_if_missing writes nothing anywhere.
TEST_F(SqliteStoreTest, WithoutCreateIfMissingNothingIsCreated) {
  const fs::path missing_dir = dir_ / "no" / "such" / "dir";
  Result<std::shared_ptr<Store>> s =
      SqliteStore::open("sqlite://" + (missing_dir / "x.db").string(), {.create_if_missing = false});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound) << s.error().to_string();
  EXPECT_NE(s.error().message().find("nothing exists"), std::string::npos) << s.error().message();
  EXPECT_FALSE(fs::exists(dir_ / "no")) << "no directory may be created";

  // A file that is there but is no Idem store stays untouched.
  const fs::path empty = dir_ / "empty.db";
  { std::ofstream touch(empty); }
  s = SqliteStore::open("sqlite://" + empty.string(), {.create_if_missing = false});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound) << s.error().to_string();
  EXPECT_EQ(fs::file_size(empty), 0U);
  EXPECT_FALSE(fs::exists(dir_ / "empty.db-wal"));

  // An existing Idem store opens, records and all.
  {
    auto store = SqliteStore::create({.path = path_}).value();
    ASSERT_TRUE(store->claim(req("kept")).ok());
  }
  s = SqliteStore::open("sqlite://" + path_, {.create_if_missing = false});
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_TRUE((*s)->get("kept")->has_value());
}

// Issue 7 item 7: two store instances on one file in one process wake each
// other's waiters. The poll interval is set far beyond the timeout, so only
// the in-process notification can make the waiter see the completion.
TEST_F(SqliteStoreTest, WaitSettledIsWokenByAnotherInstanceOnTheSameFile) {
  SqliteStoreOptions waiting_options;
  waiting_options.path = path_;
  waiting_options.wait_poll_interval = std::chrono::hours(1);
  auto waiting_store = SqliteStore::create(waiting_options).value();
  // The writer names the same file another way.
  SqliteStoreOptions writer_options;
  writer_options.path = (dir_ / "." / "idem.db").string();
  auto writer = SqliteStore::create(writer_options).value();

  auto claim = writer->claim(req("k", 60s));
  ASSERT_TRUE(claim.ok() && claim->acquired());
  std::atomic<bool> waiting{false};
  Result<std::optional<IdempotencyRecord>> seen = Error(ErrorCode::kInternal, "not run");
  std::chrono::steady_clock::time_point woke;
  std::thread waiter([&] {
    waiting = true;
    seen = waiting_store->wait_settled("k", 20s);
    woke = std::chrono::steady_clock::now();
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  const auto completed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(writer->complete(done("k", claim->token, "r")).ok());
  waiter.join();
  ASSERT_TRUE(seen.ok()) << seen.error().to_string();
  ASSERT_TRUE(seen->has_value());
  EXPECT_EQ((*seen)->status, ProcessingStatus::kCompleted);
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(woke - completed_at);
  EXPECT_LT(latency, 10s);
  RecordProperty("wake_latency_us", std::to_string(latency.count()));
}

// Another process cannot notify: its verdicts are found by polling.
TEST_F(SqliteStoreTest, WaitSettledPollsForWritesFromOtherProcesses) {
  SqliteStoreOptions options;
  options.path = path_;
  options.wait_poll_interval = 10ms;
  auto store = SqliteStore::create(options).value();
  auto claim = store->claim(req("k", 60s));
  ASSERT_TRUE(claim.ok() && claim->acquired());
  std::thread other_process([&] {
    std::this_thread::sleep_for(30ms);
    raw_exec(path_, "UPDATE records SET status = 'COMPLETED', result = 'x' WHERE key = 'k'");
  });
  auto seen = store->wait_settled("k", 20s);
  other_process.join();
  ASSERT_TRUE(seen.ok() && seen->has_value());
  EXPECT_EQ((*seen)->status, ProcessingStatus::kCompleted);
}

TEST_F(SqliteStoreTest, UnopenablePathIsKUnavailable) {
  // A regular file where a directory is expected.
  { std::ofstream(dir_ / "file") << "x"; }
  Result<std::shared_ptr<Store>> s = open((dir_ / "file" / "idem.db").string());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable) << s.error().to_string();
}

TEST_F(SqliteStoreTest, ManualClockDrivesLeasesTtlAndSweep) {
  auto store = open_ok();
  Result<ClaimOutcome> a = store->claim(req("a", 30s, 3600s));
  ASSERT_TRUE(a->acquired());
  Result<ClaimOutcome> short_ttl = store->claim(req("short-ttl", 30s, 1s));
  ASSERT_TRUE(short_ttl->acquired());
  clock_->advance(29999ms);
  EXPECT_TRUE(store->get("short-ttl")->has_value()) << "a TTL shorter than the lease waits for the lease";
  EXPECT_EQ(store->claim(req("a"))->status, ClaimStatus::kInProgress);
  EXPECT_EQ(store->sweep()->expired_removed, 0u) << "never expire under a live lease";
  clock_->advance(1ms);
  Result<ClaimOutcome> take = store->claim(req("a"));
  ASSERT_TRUE(take->acquired());
  EXPECT_EQ(take->acquire_kind, AcquireKind::kTakeover);

  for (int i = 0; i < 1200; ++i) {  // more than one sweep batch
    const std::string k = "s" + std::to_string(i);
    Result<ClaimOutcome> out = store->claim(req(k, 1s, 1s));
    ASSERT_TRUE(store->complete(done(k, out->token, "r", 5s)).ok());
  }
  clock_->advance(4s);
  EXPECT_EQ(store->stats()->completed, 1200u);
  EXPECT_EQ(store->sweep()->expired_removed, 1u) << "only short-ttl, whose lease ran out";
  clock_->advance(1s);
  EXPECT_EQ(store->stats()->completed, 0u) << "expired rows are not counted";
  EXPECT_EQ(store->sweep()->expired_removed, 1200u);
  EXPECT_EQ(store->sweep()->expired_removed, 0u);
  EXPECT_EQ(store->stats()->processing, 1u);
}

TEST_F(SqliteStoreTest, StatsAndSortedScan) {
  auto store = open_ok();
  for (int i = 9; i >= 0; --i) {
    ASSERT_TRUE(store->claim(req("k" + std::to_string(i)))->acquired());
    clock_->advance(1s);
  }
  Result<StoreStats> s = store->stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->processing, 10u);
  ASSERT_TRUE(s->oldest_processing.has_value());
  EXPECT_EQ(s->oldest_processing->idempotency_key, "k9");
  ASSERT_TRUE(s->bytes.has_value());
  EXPECT_GE(*s->bytes, 4096u);
  ScanOptions opts;
  opts.limit = 4;
  opts.older_than = 5s;
  std::vector<std::string> keys;
  for (;;) {
    Result<ScanPage> page = store->scan(opts);
    ASSERT_TRUE(page.ok());
    for (const auto& r : page->records) keys.push_back(r.idempotency_key);
    if (page->next_cursor.empty()) break;
    opts.cursor = page->next_cursor;
  }
  // "At least 5 s ago" includes k4, first seen exactly 5 s ago.
  EXPECT_EQ(keys, (std::vector<std::string>{"k4", "k5", "k6", "k7", "k8", "k9"}));
}

TEST_F(SqliteStoreTest, ConnectionPoolServesManyThreads) {
  SqliteStoreOptions o;
  o.path = path_;
  o.max_connections = 2;
  Result<std::shared_ptr<Store>> s = SqliteStore::create(o);
  ASSERT_TRUE(s.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string k = "t" + std::to_string(t) + "-" + std::to_string(i);
        Result<ClaimOutcome> out = (*s)->claim(req(k));
        if (!out.ok() || !out->acquired() || !(*s)->complete(done(k, out->token)).ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ((*s)->stats()->completed, 300u);
}

TEST_F(SqliteStoreTest, ValueAboveSqliteLimitIsRefusedNotTruncated) {
  auto store = open_ok();
  Result<ClaimOutcome> out = store->claim(req("big"));
  ASSERT_TRUE(out->acquired());
  // SQLite's default SQLITE_MAX_LENGTH is 1,000,000,000 bytes.
  const std::string huge(1'000'000'001, 'x');
  Status s = store->complete(done("big", out->token, huge));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kResultTooLarge) << s.error().to_string();
  Result<std::optional<IdempotencyRecord>> rec = store->get("big");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->status, ProcessingStatus::kProcessing) << "nothing may be written";
  EXPECT_TRUE(store->complete(done("big", out->token, "small")).ok());
}

}  // namespace
}  // namespace idem
