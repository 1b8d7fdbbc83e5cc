// File: src/stores/sqlite/sqlite_store.cpp
//
// SqliteStore: the state machine of SPEC §2 in one SQLite file.
//
// Design notes (why, not what):
// - Every state change is one SQL statement (see sql.h), so atomicity comes
//   from SQLite itself and holds across processes, not only threads.
// - WAL mode lets readers run while one writer writes; busy_timeout makes a
//   writer wait for another process's lock instead of failing at once.
// - A pool of connections, each used by one thread at a time, with its
//   statements prepared once and kept: preparing costs more than running.
// - SQLite error codes are translated in one function, sqlite_error().
// - wait_settled() sleeps on a process-wide notifier per database file (by
//   device and inode), bumped by every verdict and removal of any store
//   instance of this process on that file; other processes cannot reach it,
//   so the waiter also re-reads the record every wait_poll_interval.
// - Deadlines are saturating sums (limits.h) of durations checked by
//   validate_*_request(): no `now + ttl` can overflow.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/url_query.h"
#include "idem/stores/sqlite.h"
#include "stores/sqlite/sql.h"

namespace idem {
namespace {

namespace sql = sqlite_sql;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------
// Errors

// sqlite_error() is the one place where SQLite result codes become Idem
// errors; every message says what happened and what to do about it.
Error sqlite_error(sqlite3* db, int rc, std::string_view what, std::string_view path) {
  std::string msg = "sqlite: ";
  msg.append(what);
  msg += " on '";
  msg.append(path);
  msg += "': ";
  msg += (db != nullptr && sqlite3_errcode(db) == rc) ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  ErrorCode code = ErrorCode::kInternal;
  const char* advice = "this is a bug in Idem or SQLite; please report it";
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      code = ErrorCode::kTimeout;
      advice = "another connection held the lock for longer than busy_timeout; retry later or raise busy_timeout_ms";
      break;
    case SQLITE_INTERRUPT:
      code = ErrorCode::kTimeout;
      advice = "the statement was interrupted; retry";
      break;
    case SQLITE_CANTOPEN:
      code = ErrorCode::kUnavailable;
      advice = "check that the file and its directory exist and are readable and writable by this user";
      break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      code = ErrorCode::kUnavailable;
      advice =
          "the database is read-only for this process; make the file, its directory and its -wal/-shm files "
          "writable by this user, or choose another path";
      break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOLFS:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
      code = ErrorCode::kUnavailable;
      advice = "an I/O or resource error; check free disk space and the file system, then retry";
      break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      code = ErrorCode::kCorrupt;
      advice =
          "the file is not an Idem SQLite database or is damaged; move it away (or restore a backup) and "
          "restart";
      break;
    case SQLITE_TOOBIG:
      code = ErrorCode::kResultTooLarge;
      advice = "a value exceeds SQLite's size limit; store a smaller result";
      break;
    default: break;
  }
  msg += " (";
  msg += advice;
  msg += ")";
  return Error(code, std::move(msg));
}

std::int64_t to_ms(Timestamp t) noexcept { return t.time_since_epoch().count(); }
Timestamp from_ms(std::int64_t ms) noexcept { return Timestamp(milliseconds(ms)); }

// ---------------------------------------------------------------------------
// Connections

enum class Stmt : std::uint8_t {
  kClaim1,
  kClaim4,
  kClaim16,
  kClaim64,
  kGet,
  kComplete,
  kFail,
  kExtend,
  kCheckpoint,
  kDelete,
  kReadFloor,
  kRaiseFloor,
  kSweepBatch,
  kScan,
  kCountByStatus,
  kOldestProcessing,
  kFileSize,
  kRecordBytes,
  kBegin,
  kCommit,
  kRollback,
  kCount,
};

// The batch sizes claim_many() uses: a batch is cut into chunks of these
// sizes (largest first), each one multi-row statement.
constexpr std::array<std::size_t, 3> kClaimChunks = {64, 16, 4};

std::string_view claim_text(std::size_t rows) {
  // Built once per process; function-local statics are thread-safe.
  static const std::string one = sql::claim_sql(1);
  static const std::string four = sql::claim_sql(4, true);
  static const std::string sixteen = sql::claim_sql(16, true);
  static const std::string sixty_four = sql::claim_sql(64, true);
  switch (rows) {
    case 64: return sixty_four;
    case 16: return sixteen;
    case 4: return four;
    default: return one;
  }
}

Stmt claim_stmt(std::size_t rows) noexcept {
  switch (rows) {
    case 64: return Stmt::kClaim64;
    case 16: return Stmt::kClaim16;
    case 4: return Stmt::kClaim4;
    default: return Stmt::kClaim1;
  }
}

std::string_view statement_sql(Stmt s) {
  switch (s) {
    case Stmt::kClaim1: return claim_text(1);
    case Stmt::kClaim4: return claim_text(4);
    case Stmt::kClaim16: return claim_text(16);
    case Stmt::kClaim64: return claim_text(64);
    case Stmt::kGet: return sql::kGet;
    case Stmt::kComplete: return sql::kComplete;
    case Stmt::kFail: return sql::kFail;
    case Stmt::kExtend: return sql::kExtend;
    case Stmt::kCheckpoint: return sql::kCheckpoint;
    case Stmt::kDelete: return sql::kDelete;
    case Stmt::kReadFloor: return sql::kReadFloor;
    case Stmt::kRaiseFloor: return sql::kRaiseFloor;
    case Stmt::kSweepBatch: return sql::kSweepBatch;
    case Stmt::kScan: return sql::kScan;
    case Stmt::kCountByStatus: return sql::kCountByStatus;
    case Stmt::kOldestProcessing: return sql::kOldestProcessing;
    case Stmt::kFileSize: return sql::kFileSize;
    case Stmt::kRecordBytes: return sql::kRecordBytes;
    case Stmt::kBegin: return sql::kBegin;
    case Stmt::kCommit: return sql::kCommit;
    case Stmt::kRollback: return sql::kRollback;
    case Stmt::kCount: break;
  }
  return {};
}

// Bound statement in use: reset on scope exit so that the connection's
// cached statement is ready for the next caller and releases its read lock.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) noexcept : s_(s) {}
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  sqlite3_stmt* get() const noexcept { return s_; }

  // Binding failures (a value above SQLite's size limit) are remembered and
  // reported by step(): running the statement with the parameter left NULL
  // would, for instance, complete a record without its result.
  void bind(int i, std::string_view text) noexcept {
    if (!fits(text)) return;
    // SQLITE_STATIC: the caller's buffer outlives the step, so no copy even
    // for a 1 MiB result.
    check(sqlite3_bind_text(s_, i, text.data() == nullptr ? "" : text.data(), static_cast<int>(text.size()),
                            SQLITE_STATIC));
  }
  void bind_blob(int i, std::string_view bytes) noexcept {
    if (!fits(bytes)) return;
    check(sqlite3_bind_blob(s_, i, bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC));
  }
  void bind(int i, std::int64_t v) noexcept { check(sqlite3_bind_int64(s_, i, v)); }
  void bind_null(int i) noexcept { check(sqlite3_bind_null(s_, i)); }
  int step() noexcept { return bind_error_ != SQLITE_OK ? bind_error_ : sqlite3_step(s_); }

  std::int64_t int64(int col) const noexcept { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const noexcept { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    const int n = sqlite3_column_bytes(s_, col);
    if (p == nullptr || n <= 0) return {};
    return std::string(static_cast<const char*>(p), static_cast<std::size_t>(n));
  }

 private:
  bool fits(std::string_view v) noexcept {
    if (v.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max())) return true;
    bind_error_ = SQLITE_TOOBIG;
    return false;
  }
  void check(int rc) noexcept {
    // SQLITE_RANGE: a statement without this parameter (shared binders).
    if (rc != SQLITE_OK && rc != SQLITE_RANGE && bind_error_ == SQLITE_OK) bind_error_ = rc;
  }

  sqlite3_stmt* s_;
  int bind_error_ = SQLITE_OK;
};

class Connection {
 public:
  Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    for (sqlite3_stmt* s : stmts_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  sqlite3* db() const noexcept { return db_; }
  const std::string& path() const noexcept { return path_; }

  Result<sqlite3_stmt*> stmt(Stmt id) {
    sqlite3_stmt*& slot = stmts_[static_cast<std::size_t>(id)];
    if (slot == nullptr) {
      const std::string_view text = statement_sql(id);
      const int rc = sqlite3_prepare_v3(db_, text.data(), static_cast<int>(text.size()), SQLITE_PREPARE_PERSISTENT,
                                        &slot, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(slot);
        slot = nullptr;
        return sqlite_error(db_, rc, "preparing a statement", path_);
      }
    }
    return slot;
  }

  Error error(int rc, std::string_view what) const { return sqlite_error(db_, rc, what, path_); }

  // exec() runs SQL without results (setup only, never the hot path).
  Status exec(std::string_view text, std::string_view what) {
    const std::string owned(text);
    const int rc = sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return error(rc, what);
    return ok_status();
  }

 private:
  sqlite3* db_;
  std::string path_;
  std::array<sqlite3_stmt*, static_cast<std::size_t>(Stmt::kCount)> stmts_{};
};

class Pool;

// Lease is one connection borrowed from the pool, returned on scope exit.
class Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<Connection> c) noexcept : pool_(pool), conn_(std::move(c)) {}
  Lease(Lease&& other) noexcept = default;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Lease& operator=(Lease&&) = delete;
  ~Lease();
  Connection& operator*() const noexcept { return *conn_; }
  Connection* operator->() const noexcept { return conn_.get(); }

 private:
  Pool* pool_;
  std::unique_ptr<Connection> conn_;
};

struct OpenConfig {
  std::string path;
  milliseconds busy_timeout;
  bool durable_fsync;
  bool create;  // SQLITE_OPEN_CREATE: make the file when it is missing
};

Result<std::unique_ptr<Connection>> open_connection(const OpenConfig& cfg) {
  sqlite3* db = nullptr;
  // NOMUTEX: a connection is only ever used by the thread holding its Lease.
  const int flags = SQLITE_OPEN_READWRITE | (cfg.create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(cfg.path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sqlite_error(db, rc, "opening the database", cfg.path);
    sqlite3_close_v2(db);
    return e;
  }
  auto conn = std::make_unique<Connection>(db, cfg.path);
  sqlite3_extended_result_codes(db, 1);
  const auto timeout = std::clamp<milliseconds::rep>(cfg.busy_timeout.count(), 0, std::numeric_limits<int>::max());
  sqlite3_busy_timeout(db, static_cast<int>(timeout));
  if (sqlite3_db_readonly(db, "main") == 1) {
    return sqlite_error(db, SQLITE_READONLY, "opening the database", cfg.path);
  }
  // Switching a new file to WAL needs an exclusive lock, and SQLite answers
  // SQLITE_BUSY at once instead of calling the busy handler when another
  // process is opening the same file at the same moment: retry within
  // busy_timeout ourselves. (journal_mode=WAL is persistent; later opens find
  // it set and do not contend.)
  const auto deadline = std::chrono::steady_clock::now() + cfg.busy_timeout;
  for (auto pause = milliseconds(1);; pause = std::min(pause * 2, milliseconds(50))) {
    Status s = conn->exec(sql::kConnectionPragmas, "enabling WAL mode");
    if (s) break;
    const bool busy = s.error().code() == ErrorCode::kTimeout;
    if (!busy || std::chrono::steady_clock::now() + pause > deadline) return std::move(s).error();
    std::this_thread::sleep_for(pause);
  }
  const std::string_view sync = cfg.durable_fsync ? sql::kSynchronousFull : sql::kSynchronousNormal;
  if (Status s = conn->exec(sync, "setting synchronous"); !s) return std::move(s).error();
  return conn;
}

class Pool {
 public:
  Pool(OpenConfig cfg, std::size_t max) : cfg_(std::move(cfg)), max_(max == 0 ? 1 : max) {}

  // Seeds the pool with an already-open connection (the one used for setup).
  void put(std::unique_ptr<Connection> c) {
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  Result<Lease> acquire() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(c));
      }
      if (open_ < max_) {
        ++open_;
        lock.unlock();
        Result<std::unique_ptr<Connection>> c = open_connection(cfg_);
        if (!c) {
          lock.lock();
          --open_;
          cv_.notify_one();
          return std::move(c).error();
        }
        return Lease(this, std::move(*c));
      }
      cv_.wait(lock);
    }
  }

  void count_external() {
    std::lock_guard lock(mutex_);
    ++open_;
  }

 private:
  OpenConfig cfg_;
  std::size_t max_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
};

Lease::~Lease() {
  if (conn_) pool_->put(std::move(conn_));
}

// Transaction rolls back on scope exit unless committed.
class Transaction {
 public:
  explicit Transaction(Connection& c) noexcept : c_(c) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (open_) (void)run(Stmt::kRollback, "rolling back");
  }
  Status begin() {
    Status s = run(Stmt::kBegin, "starting a write transaction");
    open_ = s.ok();
    return s;
  }
  Status commit() {
    Status s = run(Stmt::kCommit, "committing");
    if (s) open_ = false;
    return s;
  }

 private:
  Status run(Stmt id, std::string_view what) {
    Result<sqlite3_stmt*> st = c_.stmt(id);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    const int rc = use.step();
    if (rc != SQLITE_DONE) return c_.error(rc, what);
    return ok_status();
  }
  Connection& c_;
  bool open_ = false;
};

// ---------------------------------------------------------------------------
// Records

Result<IdempotencyRecord> read_record(const StmtUse& use, const Connection& c) {
  IdempotencyRecord r;
  r.idempotency_key = use.text(0);
  r.event_id = use.text(1);
  r.event_type = use.text(2);
  const std::string status = use.text(3);
  std::optional<ProcessingStatus> st = parse_status(status);
  if (!st) {
    return Error(ErrorCode::kCorrupt, "sqlite: record '" + r.idempotency_key + "' in '" + c.path() +
                                          "' has unknown status '" + status +
                                          "'; the file was modified outside Idem, delete the record");
  }
  r.status = *st;
  if (!use.is_null(4)) r.result = use.text(4);
  if (!use.is_null(5)) r.error = use.text(5);
  r.retryable = use.int64(6) != 0;
  r.first_seen_at = from_ms(use.int64(7));
  if (!use.is_null(8)) r.completed_at = from_ms(use.int64(8));
  r.attempt = static_cast<std::uint32_t>(use.int64(9));
  r.token = static_cast<Token>(use.int64(10));
  r.lease_expires_at = from_ms(use.int64(11));
  r.fingerprint = use.text(12);
  r.expires_at = from_ms(use.int64(13));
  if (!use.is_null(14)) r.checkpoint = Checkpoint{use.text(14), use.text(15)};
  return r;
}

bool fingerprint_mismatch(std::string_view stored, std::string_view requested) noexcept {
  return !stored.empty() && !requested.empty() && stored != requested;
}

// prefix_upper_bound() is the smallest string greater than every string that
// starts with `prefix`, or nullopt when there is none (all 0xff bytes).
std::optional<std::string> prefix_upper_bound(std::string prefix) {
  while (!prefix.empty()) {
    auto last = static_cast<unsigned char>(prefix.back());
    if (last != 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::nullopt;
}

constexpr std::int64_t kSweepBatch = 512;
constexpr int kClaimAttempts = 16;

// SettleNotifier wakes wait_settled() callers of every store instance of this
// process on one database file. A generation counter, read before the record
// and bumped after each write is committed, means no wake-up is ever lost
// between a waiter's read and its sleep.
class SettleNotifier {
 public:
  std::uint64_t generation() {
    std::lock_guard lock(mutex_);
    return generation_;
  }
  void notify() {
    {
      std::lock_guard lock(mutex_);
      ++generation_;
    }
    changed_.notify_all();
  }
  // Sleeps until the generation moves past `seen` or `at_most` passes.
  void wait(std::uint64_t seen, std::chrono::steady_clock::duration at_most) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, at_most, [&] { return generation_ != seen; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;
};

// The notifier of the file at `path`, shared with every other store of this
// process on the same file (however it was named: symlinks, relative paths).
// A file that cannot be identified gets a notifier of its own; its waiters
// still see changes by polling.
std::shared_ptr<SettleNotifier> notifier_for(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::make_shared<SettleNotifier>();
  using FileId = std::pair<dev_t, ino_t>;
  static std::mutex mutex;
  static auto* notifiers = new std::map<FileId, std::weak_ptr<SettleNotifier>>();  // never destroyed
  std::lock_guard lock(mutex);
  std::erase_if(*notifiers, [](const auto& entry) { return entry.second.expired(); });
  std::weak_ptr<SettleNotifier>& slot = (*notifiers)[FileId(st.st_dev, st.st_ino)];
  std::shared_ptr<SettleNotifier> notifier = slot.lock();
  if (!notifier) {
    notifier = std::make_shared<SettleNotifier>();
    slot = notifier;
  }
  return notifier;
}

class SqliteStoreImpl final : public Store {
 public:
  SqliteStoreImpl(SqliteStoreOptions options, std::unique_ptr<Connection> first)
      : clock_(options.clock ? std::move(options.clock) : system_clock()),
        path_(options.path),
        // Bounded so that a wait on the notifier can never overflow the
        // steady clock.
        wait_poll_interval_(std::clamp(options.wait_poll_interval, milliseconds(1), kMaxLease)),
        notifier_(notifier_for(options.path)),
        pool_(OpenConfig{options.path, options.busy_timeout, options.durable_fsync, false}, options.max_connections) {
    pool_.count_external();
    pool_.put(std::move(first));
  }

  std::string_view kind() const noexcept override { return "sqlite"; }

  Result<ClaimOutcome> claim(const ClaimRequest& req) override {
    if (Status valid = validate_claim_request(req); !valid) return std::move(valid).error();
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    // Take the write lock first and read the clock under it (claim_on reads
    // it): the claim statement alone would read it before waiting up to
    // busy_timeout for the lock, and a claim that waited longer than its
    // lease would hand out a lease that has already run out, free for
    // another worker to take over at once. Same single commit as before.
    Transaction tx(**lease);
    if (Status s = tx.begin(); !s) return std::move(s).error();
    Result<ClaimOutcome> out = claim_on(**lease, req);
    if (!out) return out;
    if (Status s = tx.commit(); !s) return std::move(s).error();
    return out;
  }

  // claim_many() runs the whole batch in one write transaction, cut into
  // multi-row claim statements (see kClaimChunks): one commit instead of N,
  // and one statement per chunk instead of one per key.
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override {
    std::vector<ClaimOutcome> out;
    if (requests.empty()) return out;
    for (const ClaimRequest& req : requests) {
      if (Status valid = validate_claim_request(req); !valid) return std::move(valid).error();
    }
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    out.resize(requests.size());
    Transaction tx(c);
    if (Status s = tx.begin(); !s) return std::move(s).error();
    // Nobody can move the token floor while this transaction holds the write
    // lock: read it once instead of once per row.
    std::int64_t floor = 0;
    {
      Result<sqlite3_stmt*> st = c.stmt(Stmt::kReadFloor);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      const int rc = use.step();
      if (rc != SQLITE_ROW) return c.error(rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "reading the token floor");
      floor = use.int64(0);
    }
    std::size_t i = 0;
    while (i < requests.size()) {
      const std::size_t left = requests.size() - i;
      std::size_t chunk = 1;
      for (std::size_t size : kClaimChunks) {
        if (left >= size) {
          chunk = size;
          break;
        }
      }
      if (chunk == 1) {
        Result<ClaimOutcome> r = claim_on(c, requests[i]);
        if (!r) return std::move(r).error();
        out[i] = std::move(*r);
      } else if (Status s = claim_chunk(c, requests.subspan(i, chunk), std::span(out).subspan(i, chunk), floor); !s) {
        return std::move(s).error();
      }
      i += chunk;
    }
    if (Status s = tx.commit(); !s) return std::move(s).error();
    return out;
  }

  Status complete(const CompleteRequest& req) override {
    if (Status valid = validate_complete_request(req); !valid) return valid;
    const Timestamp now = clock_->now();
    Status status = owner_update(Stmt::kComplete, req.key, req.token, now, [&](StmtUse& use) {
      use.bind_blob(3, req.result);
      use.bind(5, to_ms(saturating_add(now, req.ttl)));
    });
    if (status) notifier_->notify();
    return status;
  }

  Status fail(const FailRequest& req) override {
    if (Status valid = validate_fail_request(req); !valid) return valid;
    const Timestamp now = clock_->now();
    Status status = owner_update(Stmt::kFail, req.key, req.token, now, [&](StmtUse& use) {
      use.bind_blob(3, req.error);
      use.bind(5, to_ms(saturating_add(now, req.ttl)));
      use.bind(6, std::int64_t{req.retryable ? 1 : 0});
    });
    if (status) notifier_->notify();
    return status;
  }

  Status extend(std::string_view key, Token token, milliseconds lease) override {
    if (Status valid = validate_lease(lease); !valid) return valid;
    const Timestamp now = clock_->now();
    return owner_update(Stmt::kExtend, key, token, now,
                        [&](StmtUse& use) { use.bind(3, to_ms(saturating_add(now, lease))); });
  }

  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    const Timestamp now = clock_->now();
    return owner_update(Stmt::kCheckpoint, key, token, now, [&](StmtUse& use) {
      use.bind_blob(3, cp.name);
      use.bind_blob(5, cp.data);
    });
  }

  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Result<std::optional<IdempotencyRecord>> r = read(**lease, key);
    if (r && *r && (*r)->expires_at <= clock_->now()) return std::optional<IdempotencyRecord>();
    return r;
  }

  Result<std::optional<std::uint64_t>> approximate_record_bytes(std::string_view key) override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    Result<sqlite3_stmt*> st = c.stmt(Stmt::kRecordBytes);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    use.bind(1, key);
    use.bind(2, to_ms(clock_->now()));
    const int rc = use.step();
    if (rc == SQLITE_DONE) return std::optional<std::uint64_t>();
    if (rc != SQLITE_ROW) return c.error(rc, "measuring a record");
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(use.int64(0)));
  }

  Result<bool> remove(std::string_view key) override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    const Timestamp now = clock_->now();
    Transaction tx(c);
    if (Status s = tx.begin(); !s) return std::move(s).error();
    bool existed = false;
    std::optional<std::int64_t> token;
    {
      Result<sqlite3_stmt*> st = c.stmt(Stmt::kDelete);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      use.bind(1, key);
      int rc = use.step();
      if (rc == SQLITE_ROW) {
        token = use.int64(0);
        existed = use.int64(1) > to_ms(now);
        rc = use.step();
      }
      if (rc != SQLITE_DONE) return c.error(rc, "deleting a record");
    }
    if (token) {
      if (Status s = raise_floor(c, *token); !s) return std::move(s).error();
    }
    if (Status s = tx.commit(); !s) return std::move(s).error();
    if (token) notifier_->notify();
    return existed;
  }

  Result<ScanPage> scan(const ScanOptions& options) override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    const Timestamp now = clock_->now();
    const std::size_t limit = options.limit == 0 ? 100 : options.limit;
    const std::optional<std::string> upper = options.prefix.empty() ? std::nullopt : prefix_upper_bound(options.prefix);
    Result<sqlite3_stmt*> st = c.stmt(Stmt::kScan);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    use.bind(1, std::string_view(options.cursor));
    use.bind(2, to_ms(now));
    if (options.status) {
      use.bind(3, to_string(*options.status));
    } else {
      use.bind_null(3);
    }
    if (options.older_than.count() > 0) {
      use.bind(4, to_ms(saturating_sub(now, options.older_than)));
    } else {
      use.bind_null(4);
    }
    use.bind(5, std::string_view(options.prefix));
    if (upper) {
      use.bind(6, std::string_view(*upper));
    } else {
      use.bind_null(6);
    }
    use.bind(7, static_cast<std::int64_t>(std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max())));
    ScanPage page;
    int rc = SQLITE_ROW;
    while ((rc = use.step()) == SQLITE_ROW) {
      Result<IdempotencyRecord> r = read_record(use, c);
      if (!r) return std::move(r).error();
      page.records.push_back(std::move(*r));
    }
    if (rc != SQLITE_DONE) return c.error(rc, "scanning records");
    if (page.records.size() == limit) page.next_cursor = page.records.back().idempotency_key;
    return page;
  }

  Result<StoreStats> stats() override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    const std::int64_t now = to_ms(clock_->now());
    StoreStats s;
    {
      Result<sqlite3_stmt*> st = c.stmt(Stmt::kCountByStatus);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      use.bind(1, now);
      int rc = SQLITE_ROW;
      while ((rc = use.step()) == SQLITE_ROW) {
        const auto n = static_cast<std::uint64_t>(use.int64(1));
        switch (parse_status(use.text(0)).value_or(ProcessingStatus::kFailed)) {
          case ProcessingStatus::kProcessing: s.processing += n; break;
          case ProcessingStatus::kCompleted: s.completed += n; break;
          case ProcessingStatus::kFailed: s.failed += n; break;
        }
      }
      if (rc != SQLITE_DONE) return c.error(rc, "counting records");
    }
    {
      Result<sqlite3_stmt*> st = c.stmt(Stmt::kOldestProcessing);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      use.bind(1, now);
      const int rc = use.step();
      if (rc == SQLITE_ROW) {
        Result<IdempotencyRecord> r = read_record(use, c);
        if (!r) return std::move(r).error();
        s.oldest_processing = std::move(*r);
      } else if (rc != SQLITE_DONE) {
        return c.error(rc, "finding the oldest PROCESSING record");
      }
    }
    {
      Result<sqlite3_stmt*> st = c.stmt(Stmt::kFileSize);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      const int rc = use.step();
      if (rc != SQLITE_ROW) return c.error(rc, "reading the file size");
      s.bytes = static_cast<std::uint64_t>(use.int64(0));
    }
    return s;
  }

  Result<SweepReport> sweep() override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    SweepReport report;
    for (;;) {
      const std::int64_t now = to_ms(clock_->now());
      Transaction tx(c);
      if (Status s = tx.begin(); !s) return std::move(s).error();
      std::int64_t removed = 0;
      std::int64_t max_token = 0;
      {
        Result<sqlite3_stmt*> st = c.stmt(Stmt::kSweepBatch);
        if (!st) return std::move(st).error();
        StmtUse use(*st);
        use.bind(1, now);
        use.bind(2, kSweepBatch);
        int rc = SQLITE_ROW;
        while ((rc = use.step()) == SQLITE_ROW) {
          ++removed;
          max_token = std::max(max_token, use.int64(0));
        }
        if (rc != SQLITE_DONE) return c.error(rc, "sweeping expired records");
      }
      if (removed > 0) {
        if (Status s = raise_floor(c, max_token); !s) return std::move(s).error();
      }
      if (Status s = tx.commit(); !s) return std::move(s).error();
      if (removed > 0) notifier_->notify();
      report.expired_removed += static_cast<std::uint64_t>(removed);
      if (removed < kSweepBatch) break;
    }
    return report;
  }

  Status ping() override {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Result<sqlite3_stmt*> st = (*lease)->stmt(Stmt::kFileSize);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    const int rc = use.step();
    if (rc != SQLITE_ROW) return (*lease)->error(rc, "ping");
    return ok_status();
  }

  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key, milliseconds timeout) override {
    using Steady = std::chrono::steady_clock;
    const Steady::time_point deadline = saturating_add(Steady::now(), std::max(timeout, milliseconds(0)));
    for (;;) {
      // Read the generation before the record: a write committed after
      // this read moves it, so the sleep below cannot miss that write.
      const std::uint64_t seen = notifier_->generation();
      Result<std::optional<IdempotencyRecord>> record = get(key);
      if (!record || !*record) return record;
      const Timestamp now = clock_->now();
      const IdempotencyRecord& r = **record;
      const Steady::time_point steady_now = Steady::now();
      if (r.status != ProcessingStatus::kProcessing || !r.lease_valid(now) || steady_now >= deadline) return record;
      // Woken by this process's writes; the poll catches other processes'
      // writes, and the lease running out ends the wait by itself.
      const milliseconds nap = std::min(wait_poll_interval_, r.lease_expires_at - now);
      notifier_->wait(seen, std::min<Steady::duration>(nap, deadline - steady_now));
    }
  }

 private:
  Result<std::optional<IdempotencyRecord>> read(Connection& c, std::string_view key) {
    Result<sqlite3_stmt*> st = c.stmt(Stmt::kGet);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    use.bind(1, key);
    const int rc = use.step();
    if (rc == SQLITE_DONE) return std::optional<IdempotencyRecord>();
    if (rc != SQLITE_ROW) return c.error(rc, "reading a record");
    Result<IdempotencyRecord> r = read_record(use, c);
    if (!r) return std::move(r).error();
    return std::optional<IdempotencyRecord>(std::move(*r));
  }

  static void bind_claim_row(StmtUse& use, std::size_t row, const ClaimRequest& req, Timestamp now) {
    const Timestamp lease_end = saturating_add(now, req.lease);
    const int b = static_cast<int>(2 + row * sql::kClaimParamsPerRow);
    use.bind(b, req.key);
    use.bind(b + 1, req.event_id);
    use.bind(b + 2, req.event_type);
    use.bind(b + 3, req.fingerprint);
    use.bind(b + 4, to_ms(lease_end));
    use.bind(b + 5, to_ms(std::max(saturating_add(now, req.ttl), lease_end)));
  }

  // Reads the acquired outcome from a RETURNING row.
  static ClaimOutcome acquired_from(const StmtUse& use) {
    ClaimOutcome out;
    out.status = ClaimStatus::kAcquired;
    out.token = static_cast<Token>(use.int64(1));
    out.attempt = static_cast<std::uint32_t>(use.int64(2));
    out.lease_expires_at = from_ms(use.int64(3));
    const std::int64_t kind = use.int64(4);
    out.acquire_kind = kind == 1 ? AcquireKind::kTakeover : kind == 2 ? AcquireKind::kRetry : AcquireKind::kNew;
    if (!use.is_null(5)) out.checkpoint = Checkpoint{use.text(5), use.text(6)};
    return out;
  }

  // The outcome for a record the claim did not acquire, or nullopt when the
  // record is in fact acquirable now (it changed since the claim ran).
  static std::optional<ClaimOutcome> not_acquired(std::optional<IdempotencyRecord> rec, const ClaimRequest& req,
                                                  Timestamp now) {
    if (!rec || rec->expires_at <= now) return std::nullopt;
    ClaimOutcome out;
    if (fingerprint_mismatch(rec->fingerprint, req.fingerprint)) {
      out.status = ClaimStatus::kMismatch;
    } else if (rec->status == ProcessingStatus::kCompleted) {
      out.status = ClaimStatus::kCompleted;
    } else if (rec->status == ProcessingStatus::kFailed && !rec->retryable) {
      out.status = ClaimStatus::kFailed;
    } else if (rec->status == ProcessingStatus::kProcessing && rec->lease_valid(now)) {
      out.status = ClaimStatus::kInProgress;
    } else {
      return std::nullopt;
    }
    out.record = std::move(rec);
    return out;
  }

  // claim_on() claims one key inside the caller's write transaction, which
  // must hold the write lock already (BEGIN IMMEDIATE): "now" is read here.
  Result<ClaimOutcome> claim_on(Connection& c, const ClaimRequest& req) {
    for (int attempt = 0; attempt < kClaimAttempts; ++attempt) {
      {
        Result<sqlite3_stmt*> st = c.stmt(Stmt::kClaim1);
        if (!st) return std::move(st).error();
        StmtUse use(*st);
        const Timestamp now = clock_->now();
        use.bind(1, to_ms(now));
        bind_claim_row(use, 0, req, now);
        int rc = use.step();
        if (rc == SQLITE_ROW) {
          ClaimOutcome out = acquired_from(use);
          rc = use.step();
          if (rc != SQLITE_DONE) return c.error(rc, "claiming a key");
          return out;
        }
        if (rc != SQLITE_DONE) return c.error(rc, "claiming a key");
      }
      // Not acquired: report the record as it stands. It may have changed in
      // between (deleted, expired, lease run out); then claim again.
      Result<std::optional<IdempotencyRecord>> r = read(c, req.key);
      if (!r) return std::move(r).error();
      std::optional<ClaimOutcome> out = not_acquired(std::move(*r), req, clock_->now());
      if (out) return std::move(*out);
    }
    return Error(ErrorCode::kTimeout, "sqlite: claim of key '" + std::string(req.key) + "' on '" + path_ +
                                          "' kept racing with concurrent changes; retry");
  }

  // claim_chunk() claims reqs.size() keys (a kClaimChunks size) with one
  // statement, inside the caller's write transaction.
  Status claim_chunk(Connection& c, std::span<const ClaimRequest> reqs, std::span<ClaimOutcome> outs,
                     std::int64_t floor) {
    const Timestamp now = clock_->now();
    // Acquired rows come back keyed by key, in no promised order. A key may
    // appear twice in a batch (and be acquired twice if its lease is zero):
    // hand the returned rows to its occurrences in token order.
    std::vector<std::pair<std::string, ClaimOutcome>> acquired;
    {
      Result<sqlite3_stmt*> st = c.stmt(claim_stmt(reqs.size()));
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      use.bind(1, to_ms(now));
      for (std::size_t r = 0; r < reqs.size(); ++r) bind_claim_row(use, r, reqs[r], now);
      use.bind(static_cast<int>(2 + reqs.size() * sql::kClaimParamsPerRow), floor);
      int rc = SQLITE_ROW;
      while ((rc = use.step()) == SQLITE_ROW) acquired.emplace_back(use.text(0), acquired_from(use));
      if (rc != SQLITE_DONE) return c.error(rc, "claiming keys");
    }
    std::sort(acquired.begin(), acquired.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second.token < b.second.token;
    });
    for (std::size_t r = 0; r < reqs.size(); ++r) {
      auto it = std::lower_bound(acquired.begin(), acquired.end(), reqs[r].key,
                                 [](const auto& entry, std::string_view key) { return entry.first < key; });
      while (it != acquired.end() && it->first == reqs[r].key && it->second.token == 0) ++it;
      if (it != acquired.end() && it->first == reqs[r].key) {
        outs[r] = it->second;
        it->second.token = 0;  // handed out
        continue;
      }
      Result<std::optional<IdempotencyRecord>> rec = read(c, reqs[r].key);
      if (!rec) return std::move(rec).error();
      std::optional<ClaimOutcome> out = not_acquired(std::move(*rec), reqs[r], now);
      if (!out) {
        // Cannot happen inside one write transaction with one `now`, but
        // the single-key claim is always correct.
        Result<ClaimOutcome> single = claim_on(c, reqs[r]);
        if (!single) return std::move(single).error();
        outs[r] = std::move(*single);
        continue;
      }
      outs[r] = std::move(*out);
    }
    return ok_status();
  }

  template <typename BindExtra>
  Status owner_update(Stmt id, std::string_view key, Token token, Timestamp now, BindExtra&& bind_extra) {
    Result<Lease> lease = pool_.acquire();
    if (!lease) return std::move(lease).error();
    Connection& c = **lease;
    {
      Result<sqlite3_stmt*> st = c.stmt(id);
      if (!st) return std::move(st).error();
      StmtUse use(*st);
      use.bind(1, key);
      use.bind(2, static_cast<std::int64_t>(token));
      use.bind(4, to_ms(now));
      bind_extra(use);
      const int rc = use.step();
      if (rc != SQLITE_DONE) return c.error(rc, "updating a record");
      if (sqlite3_changes(c.db()) == 1) return ok_status();
    }
    // Nothing written: say why, for the logs. Either way the caller lost it.
    Result<std::optional<IdempotencyRecord>> r = read(c, key);
    std::string why = "the fencing token is stale";
    if (!r) {
      why = "the record could not be read back";
    } else if (!*r || (*r)->expires_at <= now) {
      why = "the record no longer exists";
    } else if ((*r)->token == token) {
      why = "the record is no longer PROCESSING";
    }
    return Error(ErrorCode::kLeaseLost, "sqlite: lease lost on key '" + std::string(key) + "': " + why +
                                            "; another worker owns the key now, do not retry");
  }

  static Status raise_floor(Connection& c, std::int64_t token) {
    Result<sqlite3_stmt*> st = c.stmt(Stmt::kRaiseFloor);
    if (!st) return std::move(st).error();
    StmtUse use(*st);
    use.bind(1, token);
    const int rc = use.step();
    if (rc != SQLITE_DONE) return c.error(rc, "raising the token floor");
    return ok_status();
  }

  std::shared_ptr<Clock> clock_;
  std::string path_;
  milliseconds wait_poll_interval_;
  std::shared_ptr<SettleNotifier> notifier_;
  Pool pool_;
};

// Creates or checks the schema on a fresh connection, in one write
// transaction so that processes opening the file together agree. Without
// `create` it only reads: a file without the schema is kNotFound.
Status setup_schema(Connection& c, bool create) {
  if (create) {
    if (Status s = c.exec("BEGIN IMMEDIATE", "starting the schema transaction"); !s) return s;
  }
  auto fail = [&](Error e) -> Status {
    if (create) (void)c.exec("ROLLBACK", "rolling back");
    return e;
  };
  sqlite3_stmt* st = nullptr;
  std::int64_t has_meta = 0;
  int rc = sqlite3_prepare_v2(c.db(), sql::kHasMeta.data(), static_cast<int>(sql::kHasMeta.size()), &st, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      has_meta = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return fail(c.error(rc, "reading the schema"));
  if (has_meta != 0) {
    std::int64_t version = -1;
    rc = sqlite3_prepare_v2(c.db(), sql::kReadSchemaVersion.data(), static_cast<int>(sql::kReadSchemaVersion.size()),
                            &st, nullptr);
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        version = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
      } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
      }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return fail(c.error(rc, "reading the schema version"));
    if (version > sql::kSchemaVersion) {
      return fail(Error(ErrorCode::kInvalidConfiguration,
                        "sqlite: '" + c.path() + "' has schema version " + std::to_string(version) +
                            " but this Idem understands up to " + std::to_string(sql::kSchemaVersion) +
                            "; it was written by a newer Idem: upgrade Idem or use another file"));
    }
    if (version < 1) {
      return fail(Error(ErrorCode::kCorrupt, "sqlite: '" + c.path() +
                                                 "' has a meta table without a valid schema_version; it is not an "
                                                 "Idem database: choose another path"));
    }
  } else if (!create) {
    return Error(ErrorCode::kNotFound, "sqlite: '" + c.path() +
                                           "' exists but holds no Idem store (it has no Idem schema); nothing was "
                                           "written: check the path");
  }
  if (!create) return ok_status();
  if (Status s = c.exec(sql::kCreateSchema, "creating the schema"); !s) return fail(std::move(s).error());
  return c.exec("COMMIT", "committing the schema");
}

Error bad_url(std::string_view url, std::string_view why) {
  std::string msg = "sqlite store URL '";
  msg.append(url);
  msg += "': ";
  msg.append(why);
  msg +=
      " (expected sqlite:///absolute/path.db or sqlite://relative/path.db, optional "
      "?busy_timeout_ms=N&fsync=full|normal&max_connections=N)";
  return Error(ErrorCode::kInvalidConfiguration, std::move(msg));
}

// check_existing() is the open without create_if_missing: it proves that an
// Idem store is at `path` without writing a byte (no directory, no file, no
// WAL switch, no schema), or says plainly that nothing is there.
Status check_existing(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::string msg = "sqlite: nothing exists at '" + path + "'";
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
      msg += " (not even its directory '" + parent.string() + "')";
    }
    msg += "; no store was created: check the path";
    return Error(ErrorCode::kNotFound, std::move(msg));
  }
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  Connection probe(db, path);  // closes `db` whatever happens
  if (rc != SQLITE_OK) return sqlite_error(db, rc, "opening the database", path);
  return setup_schema(probe, false);
}

}  // namespace

Result<std::shared_ptr<Store>> SqliteStore::create(SqliteStoreOptions options) {
  if (options.path.empty()) {
    return Error(ErrorCode::kInvalidConfiguration, "sqlite store: options.path is empty; give the database file path");
  }
  if (options.path.find('\0') != std::string::npos) {
    return Error(ErrorCode::kInvalidConfiguration, "sqlite store: options.path contains a NUL byte");
  }
  if (!options.create_if_missing) {
    if (Status s = check_existing(options.path); !s) return std::move(s).error();
  }
  const std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
  if (options.create_if_missing && !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Error(ErrorCode::kUnavailable, "sqlite store: cannot create directory '" + parent.string() +
                                                "': " + ec.message() + " (create it or choose another path)");
    }
  }
  Result<std::unique_ptr<Connection>> first =
      open_connection(OpenConfig{options.path, options.busy_timeout, options.durable_fsync, options.create_if_missing});
  if (!first) return std::move(first).error();
  if (options.create_if_missing) {
    if (Status s = setup_schema(**first, true); !s) return std::move(s).error();
  }
  return std::shared_ptr<Store>(std::make_shared<SqliteStoreImpl>(std::move(options), std::move(*first)));
}

Result<std::shared_ptr<Store>> SqliteStore::open(std::string_view url, const OpenOptions& open_options) {
  constexpr std::string_view kScheme = "sqlite://";
  if (!url.starts_with(kScheme)) return bad_url(url, "scheme must be sqlite://");
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t q = rest.find('?');
  SqliteStoreOptions options;
  options.create_if_missing = open_options.create_if_missing;
  options.path = std::string(rest.substr(0, q));
  if (options.path.empty() || options.path == "/") return bad_url(url, "no database path");
  if (q != std::string_view::npos) {
    auto params = detail::split_url_query(rest.substr(q + 1));
    if (!params) return bad_url(url, params.error().message());
    for (const auto& [name, value] : *params) {
      auto number = [&value = value] { return detail::parse_unsigned(value); };
      if (name == "busy_timeout_ms") {
        auto n = number();
        if (!n || *n > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
          return bad_url(url, "'busy_timeout_ms' must be a non-negative integer of milliseconds");
        }
        options.busy_timeout = milliseconds(static_cast<milliseconds::rep>(*n));
      } else if (name == "fsync") {
        if (value == "full") {
          options.durable_fsync = true;
        } else if (value == "normal") {
          options.durable_fsync = false;
        } else {
          return bad_url(url, "'fsync' must be 'full' or 'normal'");
        }
      } else if (name == "max_connections") {
        auto n = number();
        if (!n || *n == 0 || *n > 1024) return bad_url(url, "'max_connections' must be between 1 and 1024");
        options.max_connections = static_cast<std::size_t>(*n);
      } else {
        return bad_url(url, "unknown query parameter '" + std::string(name) + "'");
      }
    }
  }
  return create(std::move(options));
}

}  // namespace idem
