// File: src/stores/postgres/postgres_store.cpp
//
// PostgresStore: the state machine of SPEC §2 in one PostgreSQL table.
//
// Design notes (why, not what):
// - Every call is one Op (io_loop.h): its statements and one Sync, i.e. one
//   implicit transaction and one round trip, whatever the number of keys
//   (claim_many sends one set-based statement per 256 keys, each committed
//   by a Sync of its own). The synchronous forms are the asynchronous ones
//   plus a wait (run on the caller's thread when a connection is idle).
// - Closures that outlive a call (retries, the sweeper, notifications) hold
//   the shared Core, never the store object, which may be gone by then.
// - Time is the server's (statement_timestamp()), so hosts with skewed
//   clocks agree on leases.
// - wait_settled() flags the record (waiters = true) and LISTENs; the
//   completion NOTIFYs only when flagged, so the common path pays nothing.
#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <unordered_map>

#include "idem/stores/postgres.h"
#include "stores/postgres/circuit_breaker.h"
#include "stores/postgres/codec.h"
#include "stores/postgres/connection.h"
#include "stores/postgres/io_loop.h"
#include "stores/postgres/sql.h"
#include "stores/postgres/tx_pool.h"

namespace idem {
namespace {

namespace sql = postgres_sql;
using pg::Field;
using pg::IoLoop;
using pg::Op;
using pg::OpResults;
using pg::Statement;
using std::chrono::milliseconds;

// Durations are clamped into what an interval holds comfortably.
constexpr std::int64_t kMaxMillis = 100LL * 365 * 24 * 3600 * 1000;
constexpr int kClaimAttempts = 16;
constexpr std::int64_t kSweepBatch = 1000;
// Distinct keys per claim_many statement. Each statement holds one claim
// lock per key it writes until it commits (sql.h), and the server's lock
// table is shared and bounded (max_locks_per_transaction x connections,
// 6,400 by default; 20,000 fresh keys in one statement run out of it):
// bigger batches are several statements, each committing on its own, still
// sent in one round trip.
constexpr std::size_t kBatchChunk = 256;
constexpr std::size_t kMaxValueBytes = std::size_t{1} << 30;  // bytea's limit

std::int64_t millis(milliseconds d) noexcept { return std::clamp<std::int64_t>(d.count(), 0, kMaxMillis); }

std::optional<std::string> text(std::string_view v) { return std::string(v); }
std::optional<std::string> bytes(std::string_view v) { return std::string(v); }
std::optional<std::string> int8(std::int64_t v) { return pg::encode_int8(v); }
std::optional<std::string> boolean(bool v) { return pg::encode_bool(v); }

template <typename Callback, typename Value>
void deliver(Callback& done, Value&& value) noexcept {
  try {
    done(std::forward<Value>(value));
  } catch (...) {  // NOLINT(bugprone-empty-catch): the store API drops exceptions of completions
  }
}

std::vector<Field> row_fields(const PGresult* r, int row) {
  const int n = PQnfields(r);
  std::vector<Field> fields(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    Field& f = fields[static_cast<std::size_t>(i)];
    f.null = PQgetisnull(r, row, i) != 0;
    if (!f.null) f.bytes = std::string_view(PQgetvalue(r, row, i), static_cast<std::size_t>(PQgetlength(r, row, i)));
  }
  return fields;
}

Result<std::int64_t> scalar_int(const PGresult* r, int column, std::string_view what) {
  if (PQntuples(r) < 1 || PQnfields(r) <= column || PQgetisnull(r, 0, column) != 0) {
    return Error(ErrorCode::kInternal, "postgresql: " + std::string(what) + ": unexpected empty answer");
  }
  const std::string_view v(PQgetvalue(r, 0, column), static_cast<std::size_t>(PQgetlength(r, 0, column)));
  if (auto x = pg::decode_int8(v)) return *x;
  if (auto x = pg::decode_int4(v)) return *x;
  if (auto x = pg::decode_int2(v)) return *x;
  return Error(ErrorCode::kInternal, "postgresql: " + std::string(what) + ": unexpected answer type");
}

bool one_row_changed(const PGresult* r) {
  const char* n = PQcmdTuples(const_cast<PGresult*>(r));  // libpq's signature is not const-correct
  return n != nullptr && std::string_view(n) == "1";
}

Error lease_lost(std::string_view key, Token token) {
  return Error(ErrorCode::kLeaseLost, "postgresql: lease lost on key '" + std::string(key) + "' (token " +
                                          std::to_string(token) +
                                          "): another worker took the key over, or it is no longer PROCESSING, or "
                                          "it expired or was removed; nothing was written, do not retry");
}

// The shared part of a store: everything a late completion may touch.
struct Core {
  PostgresStoreOptions options;
  std::string target;
  std::shared_ptr<IoLoop> loop;
  std::shared_ptr<pg::TxPool> tx_pool;
  std::shared_ptr<pg::CircuitBreaker> breaker;  // shared with tx_pool
  std::atomic<bool> sweeping{false};

  // Duplicates waiting in wait_settled(), by key; notifications bump `gen`.
  struct Waiting {
    int count = 0;
    std::uint64_t gen = 0;
  };
  std::mutex waiters_mutex;
  std::condition_variable waiters_cv;
  std::unordered_map<std::string, Waiting> waiting;  // guarded by waiters_mutex
  std::uint64_t wake_all = 0;                        // guarded by waiters_mutex

  milliseconds timeout() const noexcept { return options.command_timeout; }
  milliseconds admin_timeout() const noexcept { return options.command_timeout * 12; }

  void on_notify(std::string_view payload) {
    {
      std::lock_guard lock(waiters_mutex);
      if (payload.empty()) {
        ++wake_all;
      } else if (auto it = waiting.find(std::string(payload)); it != waiting.end()) {
        ++it->second.gen;
      } else {
        return;
      }
    }
    waiters_cv.notify_all();
  }
};

// Set while a synchronous call starts its Op: the Op may then run right on
// the calling thread (IoLoop::run_direct), which saves the two thread
// handoffs of going through the I/O thread and back.
thread_local bool t_direct = false;

class DirectScope {
 public:
  DirectScope() noexcept : previous_(t_direct) { t_direct = true; }
  ~DirectScope() { t_direct = previous_; }
  DirectScope(const DirectScope&) = delete;
  DirectScope& operator=(const DirectScope&) = delete;

 private:
  bool previous_;
};

// execute() runs an Op unless the circuit breaker is open, and tells the
// breaker whether the server answered it.
void execute(const std::shared_ptr<Core>& core, std::unique_ptr<Op> op) {
  if (!core->breaker->allow()) {
    deliver(op->done, OpResults(pg::circuit_open_error(*core->breaker, core->target)));
    return;
  }
  // The Op outlives its completion's call, so the completion may read it.
  const Op* raw = op.get();
  op->done = [breaker = core->breaker, raw, inner = std::move(op->done)](OpResults r) mutable {
    breaker->record(raw->answered);
    inner(std::move(r));
  };
  if (t_direct && core->loop->run_direct(op)) return;
  core->loop->submit(std::move(op));
}

std::unique_ptr<Op> make_op(const char* what, milliseconds timeout) {
  auto op = std::make_unique<Op>();
  op->what = what;
  op->timeout = timeout;
  return op;
}

// Checks what PostgreSQL's text type cannot hold, before anything is sent.
std::optional<Error> check_text(std::string_view value, const char* field) {
  if (pg::valid_utf8(value)) return std::nullopt;
  return Error(ErrorCode::kInvalidArgument,
               std::string("postgresql: the ") + field +
                   " is not valid UTF-8 (or contains NUL), which a PostgreSQL text column cannot hold; hash the keys "
                   "(KeyOptions::hash_keys) or fix the producer");
}

std::optional<Error> check_key(std::string_view key) {
  if (key.empty()) return Error(ErrorCode::kInvalidArgument, "postgresql: the key is empty");
  return check_text(key, "key");
}

std::optional<Error> check_value(std::string_view value) {
  if (value.size() < kMaxValueBytes) return std::nullopt;
  return Error(ErrorCode::kInvalidArgument, "postgresql: a value of " + std::to_string(value.size()) +
                                                " bytes is above PostgreSQL's 1 GiB limit; store a smaller result");
}

std::optional<Error> check_claim(const ClaimRequest& req) {
  if (Status valid = validate_claim_request(req); !valid) return std::move(valid).error();
  if (auto e = check_key(req.key)) return e;
  if (auto e = check_text(req.event_id, "event_id")) return e;
  if (auto e = check_text(req.event_type, "event_type")) return e;
  return check_text(req.fingerprint, "fingerprint");
}

Statement claim_statement(const ClaimRequest& req) {
  return Statement{sql::Stmt::kClaim,
                   {text(req.key), text(req.event_id), text(req.event_type), text(req.fingerprint),
                    int8(millis(req.lease)), int8(millis(req.ttl))}};
}

// The outcome of a decoded claim row, or nullopt when the claim must run
// again (its snapshot was overtaken, see sql.h).
std::optional<ClaimOutcome> decide(pg::ClaimRow row, std::string_view fingerprint) {
  ClaimOutcome out;
  if (row.acquired) {
    out.status = ClaimStatus::kAcquired;
    out.acquire_kind = row.acquire_kind;
    out.token = row.record.token;
    out.attempt = row.record.attempt;
    out.lease_expires_at = row.record.lease_expires_at;
    out.checkpoint = std::move(row.record.checkpoint);
    return out;
  }
  if (!row.blocked) return std::nullopt;
  const IdempotencyRecord& rec = row.record;
  if (!rec.fingerprint.empty() && !fingerprint.empty() && rec.fingerprint != fingerprint) {
    out.status = ClaimStatus::kMismatch;
  } else if (rec.status == ProcessingStatus::kCompleted) {
    out.status = ClaimStatus::kCompleted;
  } else if (rec.status == ProcessingStatus::kFailed) {
    out.status = ClaimStatus::kFailed;  // blocked, so terminal
  } else {
    out.status = ClaimStatus::kInProgress;
  }
  out.record = std::move(row.record);
  return out;
}

// The answer of one claim statement (see decide()).
Result<std::optional<ClaimOutcome>> claim_answer(const PGresult* r, std::string_view fingerprint) {
  if (PQntuples(r) == 0) return std::optional<ClaimOutcome>();
  Result<pg::ClaimRow> row = pg::decode_claim_row(row_fields(r, 0));
  if (!row) return std::move(row).error();
  return decide(std::move(*row), fingerprint);
}

Error claim_raced(std::string_view key, const std::string& target) {
  return Error(ErrorCode::kTimeout, "postgresql: claim of key '" + std::string(key) + "' (" + target +
                                        ") kept racing with concurrent changes; retry");
}

// run_claim() submits one claim and retries it while its snapshot keeps
// being overtaken.
void run_claim(const std::shared_ptr<Core>& core, std::shared_ptr<const Statement> st, int attempt,
               ResultCallback<ClaimOutcome> done) {
  auto op = make_op("claiming a key", core->timeout());
  op->statements.push_back(*st);
  op->done = [core, st, attempt, done = std::move(done)](OpResults r) mutable {
    if (!r) return deliver(done, std::move(r).error());
    Result<std::optional<ClaimOutcome>> answer = claim_answer(r->front().get(), *st->params[3]);
    if (!answer) return deliver(done, std::move(answer).error());
    if (*answer) return deliver(done, std::move(**answer));
    if (attempt + 1 >= kClaimAttempts) return deliver(done, claim_raced(*st->params[0], core->target));
    run_claim(core, std::move(st), attempt + 1, std::move(done));
  };
  execute(core, std::move(op));
}

void submit_owner_update(const std::shared_ptr<Core>& core, const char* what, Statement st, std::string key,
                         Token token, bool counted_answer, StatusCallback done) {
  auto op = make_op(what, core->timeout());
  op->statements.push_back(std::move(st));
  op->done = [counted_answer, key = std::move(key), token, done = std::move(done)](OpResults r) mutable {
    if (!r) return deliver(done, Status(std::move(r).error()));
    const PGresult* res = r->front().get();
    bool written = false;
    if (counted_answer) {
      Result<std::int64_t> n = scalar_int(res, 0, "updating a record");
      if (!n) return deliver(done, Status(std::move(n).error()));
      written = *n == 1 || *n == 2;
    } else {
      written = one_row_changed(res);
    }
    deliver(done, written ? ok_status() : Status(lease_lost(key, token)));
  };
  execute(core, std::move(op));
}

Result<std::optional<IdempotencyRecord>> record_answer(const PGresult* r) {
  if (PQntuples(r) == 0) return std::optional<IdempotencyRecord>();
  const std::vector<Field> fields = row_fields(r, 0);
  Result<IdempotencyRecord> rec = pg::decode_record(fields);
  if (!rec) return std::move(rec).error();
  return std::optional<IdempotencyRecord>(std::move(*rec));
}

// Waits for the value a completion callback delivers (sync = async + wait).
template <typename V>
struct SyncSlot {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<V> value;
};

template <typename V, typename Start>
V wait_for(Start&& start) {
  auto slot = std::make_shared<SyncSlot<V>>();
  const DirectScope direct;
  start([slot](V v) {
    {
      std::lock_guard lock(slot->mutex);
      slot->value.emplace(std::move(v));
    }
    // Outside the lock, so the woken caller does not block on it again;
    // the slot is kept alive by this closure.
    slot->cv.notify_one();
  });
  std::unique_lock lock(slot->mutex);
  slot->cv.wait(lock, [&] { return slot->value.has_value(); });
  return std::move(*slot->value);
}

Error io_thread_call(std::string_view what) {
  return Error(ErrorCode::kInternal, "postgresql: synchronous " + std::string(what) +
                                         "() called from inside an asynchronous completion, on the store's I/O "
                                         "thread; it would wait for itself. Use the *_async form there");
}

void run_sweep_batches(const std::shared_ptr<Core>& core, std::uint64_t removed_so_far,
                       std::function<void(Result<SweepReport>)> done) {
  auto op = make_op("sweeping expired records", core->admin_timeout());
  op->statements.push_back(Statement{sql::Stmt::kSweepBatch, {int8(kSweepBatch)}});
  op->done = [core, removed_so_far, done = std::move(done)](OpResults r) mutable {
    if (!r) return deliver(done, Result<SweepReport>(std::move(r).error()));
    Result<std::int64_t> n = scalar_int(r->front().get(), 0, "sweeping");
    if (!n) return deliver(done, Result<SweepReport>(std::move(n).error()));
    const std::uint64_t total = removed_so_far + static_cast<std::uint64_t>(*n);
    if (*n < kSweepBatch) return deliver(done, Result<SweepReport>(SweepReport{total}));
    run_sweep_batches(core, total, std::move(done));
  };
  execute(core, std::move(op));
}

class PostgresStoreImpl final : public Store {
 public:
  explicit PostgresStoreImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~PostgresStoreImpl() override { core_->loop->stop(); }
  PostgresStoreImpl(const PostgresStoreImpl&) = delete;
  PostgresStoreImpl& operator=(const PostgresStoreImpl&) = delete;

  std::string_view kind() const noexcept override { return "postgresql"; }
  bool async_is_native() const noexcept override { return true; }
  CircuitState circuit_state() const noexcept override { return core_->breaker->state(); }
  const std::shared_ptr<Core>& core() const noexcept { return core_; }

  // --- Asynchronous forms: the real implementations. ------------------------

  void claim_async(const ClaimRequest& req, ResultCallback<ClaimOutcome> done) override {
    if (auto e = check_claim(req)) return deliver(done, std::move(*e));
    run_claim(core_, std::make_shared<const Statement>(claim_statement(req)), 0, std::move(done));
  }

  // claim_many_async() sends every distinct key once in one set-based
  // statement per kBatchChunk keys (sql.h kClaimBatchSql): one round trip,
  // one commit per statement. A key
  // repeated in the batch gets what a second claim right after the first
  // would get (derived from the first's answer); the rare case that needs a
  // real second claim, and keys whose snapshot was overtaken, are claimed
  // alone afterwards, in request order.
  void claim_many_async(std::span<const ClaimRequest> requests,
                        ResultCallback<std::vector<ClaimOutcome>> done) override {
    if (requests.empty()) return deliver(done, std::vector<ClaimOutcome>());
    for (const ClaimRequest& req : requests) {
      if (auto e = check_claim(req)) return deliver(done, std::move(*e));
    }
    auto batch = std::make_shared<Batch>();
    batch->singles.reserve(requests.size());
    for (const ClaimRequest& req : requests) batch->singles.push_back(claim_statement(req));
    batch->first_of.resize(requests.size());
    batch->outs.resize(requests.size());
    std::unordered_map<std::string_view, std::size_t> seen;
    std::vector<std::string_view> keys, ids, types, fps, leases, ttls;
    auto op = make_op("claiming keys", core_->timeout());
    auto add_statement = [&] {
      op->statements.push_back(Statement{
          sql::Stmt::kClaimBatch,
          {pg::encode_array(sql::kText, keys), pg::encode_array(sql::kText, ids), pg::encode_array(sql::kText, types),
           pg::encode_array(sql::kText, fps), pg::encode_array(sql::kInt8, leases), pg::encode_array(sql::kInt8, ttls)},
          true});
      for (auto* v : {&keys, &ids, &types, &fps, &leases, &ttls}) v->clear();
    };
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto& p = batch->singles[i].params;
      auto [it, fresh] = seen.emplace(*p[0], i);
      batch->first_of[i] = it->second;
      if (!fresh) continue;
      keys.push_back(*p[0]);
      ids.push_back(*p[1]);
      types.push_back(*p[2]);
      fps.push_back(*p[3]);
      leases.push_back(*p[4]);
      ttls.push_back(*p[5]);
      if (keys.size() == kBatchChunk) add_statement();
    }
    if (!keys.empty()) add_statement();
    op->done = [core = core_, batch, done = std::move(done)](OpResults r) mutable {
      if (!r) return deliver(done, Result<std::vector<ClaimOutcome>>(std::move(r).error()));
      if (Status s = resolve_batch(*batch, *r); !s) {
        return deliver(done, Result<std::vector<ClaimOutcome>>(std::move(s).error()));
      }
      claim_alone(core, std::move(batch), 0, std::move(done));
    };
    execute(core_, std::move(op));
  }

  void complete_async(const CompleteRequest& req, StatusCallback done) override {
    if (Status valid = validate_complete_request(req); !valid) return deliver(done, std::move(valid));
    if (auto e = check_key(req.key)) return deliver(done, Status(std::move(*e)));
    if (auto e = check_value(req.result)) return deliver(done, Status(std::move(*e)));
    submit_owner_update(core_, "completing a record",
                        Statement{sql::Stmt::kComplete,
                                  {text(req.key), int8(static_cast<std::int64_t>(req.token)), bytes(req.result),
                                   int8(millis(req.ttl)), boolean(false)}},
                        std::string(req.key), req.token, true, std::move(done));
  }

  void fail_async(const FailRequest& req, StatusCallback done) override {
    if (Status valid = validate_fail_request(req); !valid) return deliver(done, std::move(valid));
    if (auto e = check_key(req.key)) return deliver(done, Status(std::move(*e)));
    if (auto e = check_value(req.error)) return deliver(done, Status(std::move(*e)));
    submit_owner_update(core_, "failing a record",
                        Statement{sql::Stmt::kFail,
                                  {text(req.key), int8(static_cast<std::int64_t>(req.token)), bytes(req.error),
                                   int8(millis(req.ttl)), boolean(req.retryable)}},
                        std::string(req.key), req.token, true, std::move(done));
  }

  void extend_async(std::string_view key, Token token, milliseconds lease, StatusCallback done) override {
    if (Status valid = validate_lease(lease); !valid) return deliver(done, std::move(valid));
    if (auto e = check_key(key)) return deliver(done, Status(std::move(*e)));
    submit_owner_update(
        core_, "extending a lease",
        Statement{sql::Stmt::kExtend, {text(key), int8(static_cast<std::int64_t>(token)), int8(millis(lease))}},
        std::string(key), token, false, std::move(done));
  }

  void checkpoint_async(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done) override {
    if (auto e = check_key(key)) return deliver(done, Status(std::move(*e)));
    if (auto e = check_value(cp.data)) return deliver(done, Status(std::move(*e)));
    submit_owner_update(core_, "recording a checkpoint",
                        Statement{sql::Stmt::kCheckpoint,
                                  {text(key), int8(static_cast<std::int64_t>(token)), bytes(cp.name), bytes(cp.data)}},
                        std::string(key), token, false, std::move(done));
  }

  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    if (auto e = check_key(key)) return deliver(done, std::move(*e));
    auto op = make_op("reading a record", core_->timeout());
    op->statements.push_back(Statement{sql::Stmt::kGet, {text(key)}});
    op->done = [done = std::move(done)](OpResults r) mutable {
      if (!r) return deliver(done, Result<std::optional<IdempotencyRecord>>(std::move(r).error()));
      deliver(done, record_answer(r->front().get()));
    };
    execute(core_, std::move(op));
  }

  void remove_async(std::string_view key, ResultCallback<bool> done) override {
    if (auto e = check_key(key)) return deliver(done, std::move(*e));
    auto op = make_op("deleting a record", core_->timeout());
    op->statements.push_back(Statement{sql::Stmt::kRemove, {text(key)}});
    op->done = [done = std::move(done)](OpResults r) mutable {
      if (!r) return deliver(done, Result<bool>(std::move(r).error()));
      Result<std::int64_t> n = scalar_int(r->front().get(), 0, "deleting a record");
      if (!n) return deliver(done, Result<bool>(std::move(n).error()));
      deliver(done, Result<bool>(*n > 0));
    };
    execute(core_, std::move(op));
  }

  // --- Synchronous forms: asynchronous + wait. ------------------------------

  Result<ClaimOutcome> claim(const ClaimRequest& req) override {
    if (core_->loop->on_io_thread()) return io_thread_call("claim");
    return wait_for<Result<ClaimOutcome>>([&](auto cb) { claim_async(req, std::move(cb)); });
  }
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override {
    if (core_->loop->on_io_thread()) return io_thread_call("claim_many");
    return wait_for<Result<std::vector<ClaimOutcome>>>([&](auto cb) { claim_many_async(requests, std::move(cb)); });
  }
  Status complete(const CompleteRequest& req) override {
    if (core_->loop->on_io_thread()) return io_thread_call("complete");
    return wait_for<Status>([&](auto cb) { complete_async(req, std::move(cb)); });
  }
  Status fail(const FailRequest& req) override {
    if (core_->loop->on_io_thread()) return io_thread_call("fail");
    return wait_for<Status>([&](auto cb) { fail_async(req, std::move(cb)); });
  }
  Status extend(std::string_view key, Token token, milliseconds lease) override {
    if (core_->loop->on_io_thread()) return io_thread_call("extend");
    return wait_for<Status>([&](auto cb) { extend_async(key, token, lease, std::move(cb)); });
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    if (core_->loop->on_io_thread()) return io_thread_call("checkpoint");
    return wait_for<Status>([&](auto cb) { checkpoint_async(key, token, cp, std::move(cb)); });
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    if (core_->loop->on_io_thread()) return io_thread_call("get");
    return wait_for<Result<std::optional<IdempotencyRecord>>>([&](auto cb) { get_async(key, std::move(cb)); });
  }
  Result<bool> remove(std::string_view key) override {
    if (core_->loop->on_io_thread()) return io_thread_call("remove");
    return wait_for<Result<bool>>([&](auto cb) { remove_async(key, std::move(cb)); });
  }

  Result<ScanPage> scan(const ScanOptions& options) override {
    if (core_->loop->on_io_thread()) return io_thread_call("scan");
    if (!options.cursor.empty()) {
      if (auto e = check_text(options.cursor, "scan cursor")) return std::move(*e);
    }
    ScanPage empty;
    if (!pg::valid_utf8(options.prefix)) return empty;  // no stored key starts with it
    const std::size_t limit = options.limit == 0 ? 100 : std::min<std::size_t>(options.limit, 100'000);
    const std::optional<std::string> upper =
        options.prefix.empty() ? std::nullopt : pg::prefix_upper_bound(options.prefix);
    Statement st{
        upper ? sql::Stmt::kScanBounded : sql::Stmt::kScan,
        {text(options.cursor), text(options.prefix), options.status ? text(to_string(*options.status)) : std::nullopt,
         options.older_than.count() > 0 ? int8(millis(options.older_than)) : std::nullopt,
         int8(static_cast<std::int64_t>(limit))}};
    if (upper) st.params.push_back(text(*upper));
    Result<std::vector<pg::ResultPtr>> r = run_sync("listing records", core_->admin_timeout(), {std::move(st)});
    if (!r) return std::move(r).error();
    const PGresult* res = r->front().get();
    ScanPage page;
    const int rows = PQntuples(res);
    page.records.reserve(static_cast<std::size_t>(rows));
    for (int i = 0; i < rows; ++i) {
      Result<IdempotencyRecord> rec = pg::decode_record(row_fields(res, i));
      if (!rec) return std::move(rec).error();
      page.records.push_back(std::move(*rec));
    }
    if (page.records.size() == limit) page.next_cursor = page.records.back().idempotency_key;
    return page;
  }

  Result<StoreStats> stats() override {
    if (core_->loop->on_io_thread()) return io_thread_call("stats");
    Result<std::vector<pg::ResultPtr>> r =
        run_sync("reading statistics", core_->admin_timeout(),
                 {Statement{sql::Stmt::kCountByStatus, {}}, Statement{sql::Stmt::kOldestProcessing, {}},
                  Statement{sql::Stmt::kTableBytes, {}}});
    if (!r) return std::move(r).error();
    StoreStats s;
    const PGresult* counts = (*r)[0].get();
    for (int i = 0; i < PQntuples(counts); ++i) {
      const std::vector<Field> f = row_fields(counts, i);
      const std::optional<std::int64_t> n = f.size() == 2 && !f[1].null ? pg::decode_int8(f[1].bytes) : std::nullopt;
      const std::optional<ProcessingStatus> st = f.size() == 2 && !f[0].null ? parse_status(f[0].bytes) : std::nullopt;
      if (!n || !st || *n < 0) return Error(ErrorCode::kCorrupt, "postgresql: unexpected status count row");
      switch (*st) {
        case ProcessingStatus::kProcessing: s.processing += static_cast<std::uint64_t>(*n); break;
        case ProcessingStatus::kCompleted: s.completed += static_cast<std::uint64_t>(*n); break;
        case ProcessingStatus::kFailed: s.failed += static_cast<std::uint64_t>(*n); break;
      }
    }
    Result<std::optional<IdempotencyRecord>> oldest = record_answer((*r)[1].get());
    if (!oldest) return std::move(oldest).error();
    s.oldest_processing = std::move(*oldest);
    Result<std::int64_t> size = scalar_int((*r)[2].get(), 0, "reading the table size");
    if (!size) return std::move(size).error();
    s.bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, *size));
    return s;
  }

  Result<SweepReport> sweep() override {
    if (core_->loop->on_io_thread()) return io_thread_call("sweep");
    return wait_for<Result<SweepReport>>([&](auto cb) { run_sweep_batches(core_, 0, std::move(cb)); });
  }

  Status ping() override {
    if (core_->loop->on_io_thread()) return io_thread_call("ping");
    Result<std::vector<pg::ResultPtr>> r = run_sync("ping", core_->timeout(), {Statement{sql::Stmt::kPing, {}}});
    if (!r) return std::move(r).error();
    return ok_status();
  }

  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key, milliseconds timeout) override;

 private:
  struct Batch {
    std::vector<Statement> singles;     // per request: its own claim, for claims run alone
    std::vector<std::size_t> first_of;  // per request: the first request with the same key
    std::vector<ClaimOutcome> outs;
    std::vector<std::size_t> alone;  // requests to claim one by one afterwards, in order
  };

  // Reads the batch statements' answers into batch.outs (and batch.alone).
  static Status resolve_batch(Batch& batch, const std::vector<pg::ResultPtr>& results) {
    std::unordered_map<std::string, pg::ClaimRow> rows;
    for (const pg::ResultPtr& r : results) {
      for (int i = 0; i < PQntuples(r.get()); ++i) {
        Result<pg::ClaimRow> row = pg::decode_claim_row(row_fields(r.get(), i));
        if (!row) return std::move(row).error();
        std::string key = row->record.idempotency_key;
        rows.emplace(std::move(key), std::move(*row));
      }
    }
    const std::size_t n = batch.singles.size();
    std::vector<bool> is_alone(n, false);
    std::vector<std::optional<IdempotencyRecord>> records(n);  // of first occurrences
    for (std::size_t i = 0; i < n; ++i) {
      const auto& p = batch.singles[i].params;
      const std::size_t first = batch.first_of[i];
      if (first == i) {
        auto it = rows.find(*p[0]);
        std::optional<ClaimOutcome> out;
        if (it != rows.end()) {
          records[i] = it->second.record;
          out = decide(std::move(it->second), *p[3]);
        }
        if (out) {
          batch.outs[i] = std::move(*out);
        } else {
          is_alone[i] = true;
        }
        continue;
      }
      // A repeat: what a claim right after the first occurrence answers.
      if (is_alone[first] || !records[first]) {
        is_alone[i] = true;
        continue;
      }
      const IdempotencyRecord& rec = *records[first];
      const ClaimOutcome& prior = batch.outs[first];
      ClaimOutcome out;
      if (!rec.fingerprint.empty() && !p[3]->empty() && rec.fingerprint != *p[3]) {
        out.status = ClaimStatus::kMismatch;
      } else if (prior.acquired()) {
        out.status = ClaimStatus::kInProgress;
      } else if (rec.status == ProcessingStatus::kCompleted) {
        out.status = ClaimStatus::kCompleted;
      } else if (rec.status == ProcessingStatus::kFailed && !rec.retryable) {
        out.status = ClaimStatus::kFailed;
      } else if (rec.status == ProcessingStatus::kProcessing && prior.status == ClaimStatus::kInProgress) {
        out.status = ClaimStatus::kInProgress;
      } else {
        // The first was refused for its payload; this one may acquire.
        is_alone[i] = true;
        continue;
      }
      out.record = rec;
      batch.outs[i] = std::move(out);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (is_alone[i]) batch.alone.push_back(i);
    }
    return ok_status();
  }

  static void claim_alone(const std::shared_ptr<Core>& core, std::shared_ptr<Batch> batch, std::size_t next,
                          ResultCallback<std::vector<ClaimOutcome>> done) {
    if (next == batch->alone.size()) return deliver(done, Result<std::vector<ClaimOutcome>>(std::move(batch->outs)));
    const std::size_t i = batch->alone[next];
    run_claim(core, std::make_shared<const Statement>(batch->singles[i]), 0,
              [core, batch, next, i, done = std::move(done)](Result<ClaimOutcome> r) mutable {
                if (!r) return deliver(done, Result<std::vector<ClaimOutcome>>(std::move(r).error()));
                batch->outs[i] = std::move(*r);
                claim_alone(core, std::move(batch), next + 1, std::move(done));
              });
  }

  Result<std::vector<pg::ResultPtr>> run_sync(const char* what, milliseconds timeout,
                                              std::vector<Statement> statements) {
    return wait_for<OpResults>([&](auto cb) {
      auto op = make_op(what, timeout);
      op->statements = std::move(statements);
      op->done = std::move(cb);
      execute(core_, std::move(op));
    });
  }

  std::shared_ptr<Core> core_;
};

Result<std::optional<IdempotencyRecord>> PostgresStoreImpl::wait_settled(std::string_view key, milliseconds timeout) {
  if (core_->loop->on_io_thread()) return io_thread_call("wait_settled");
  if (auto e = check_key(key)) return std::move(*e);
  using Steady = std::chrono::steady_clock;
  const auto deadline = Steady::now() + std::max(timeout, milliseconds(0));
  auto settled = [](const std::optional<IdempotencyRecord>& rec) {
    const auto now = std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
    return !rec || rec->status != ProcessingStatus::kProcessing || !rec->lease_valid(now);
  };
  Result<std::optional<IdempotencyRecord>> first = get(key);
  if (!first || settled(*first) || Steady::now() >= deadline) return first;

  // Listen first, then flag the record: a completion after the flag is
  // certain to notify a listener that is already in place.
  auto listening_slot = std::make_shared<SyncSlot<bool>>();
  core_->loop->ensure_listening([listening_slot](bool ok) {
    std::lock_guard lock(listening_slot->mutex);
    listening_slot->value = ok;
    listening_slot->cv.notify_one();
  });
  bool listening = false;
  {
    std::unique_lock lock(listening_slot->mutex);
    listening_slot->cv.wait_until(lock, std::min(deadline, Steady::now() + core_->options.connect_timeout),
                                  [&] { return listening_slot->value.has_value(); });
    listening = listening_slot->value.value_or(false);
  }
  const std::string k(key);
  std::uint64_t seen = 0;
  {
    std::lock_guard lock(core_->waiters_mutex);
    Core::Waiting& w = core_->waiting[k];
    ++w.count;
    seen = w.gen + core_->wake_all;
  }
  struct Unregister {
    Core& core;
    const std::string& key;
    ~Unregister() {
      std::lock_guard lock(core.waiters_mutex);
      auto it = core.waiting.find(key);
      if (it != core.waiting.end() && --it->second.count == 0) core.waiting.erase(it);
    }
  } unregister{*core_, k};

  Result<std::vector<pg::ResultPtr>> reg =
      run_sync("waiting for a record", core_->timeout(), {Statement{sql::Stmt::kRegisterWaiter, {text(key)}}});
  if (!reg) return std::move(reg).error();
  Result<std::optional<IdempotencyRecord>> current = record_answer(reg->front().get());
  if (!current) return current;
  if (!*current) return get(key);  // settled (or gone) before the flag was set

  // Without notifications, poll with a backoff; with them, poll rarely, as a
  // safety net for a listener connection that broke and came back.
  milliseconds poll = listening ? milliseconds(1000) : milliseconds(5);
  for (;;) {
    const auto now_wall = std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
    const auto lease_left = std::max(milliseconds(0), (*current)->lease_expires_at - now_wall) + milliseconds(1);
    const auto wake_at = std::min({deadline, Steady::now() + lease_left, Steady::now() + poll});
    {
      std::unique_lock lock(core_->waiters_mutex);
      core_->waiters_cv.wait_until(lock, wake_at, [&] { return core_->waiting[k].gen + core_->wake_all != seen; });
      seen = core_->waiting[k].gen + core_->wake_all;
    }
    current = get(key);
    if (!current || settled(*current) || Steady::now() >= deadline) return current;
    if (!listening) poll = std::min(poll * 2, milliseconds(200));
  }
}

// Creates or upgrades the schema on a blocking connection.
Status setup_schema(PGconn* c, const PostgresStoreOptions& o, const std::string& target) {
  auto exec = [&](std::string_view text_template, const char* what) -> Result<pg::ResultPtr> {
    const std::string q = sql::render(text_template, o.schema);
    pg::ResultPtr r(PQexec(c, q.c_str()));
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return pg::result_error(r.get(), c, what, target);
    return r;
  };
  auto read_int = [&](std::string_view text_template, const char* what) -> Result<long long> {
    Result<pg::ResultPtr> r = exec(text_template, what);
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) != 1) return Error(ErrorCode::kInternal, "postgresql: " + std::string(what) + ": no row");
    long long v = 0;
    const char* s = PQgetvalue(r->get(), 0, 0);
    const std::string_view sv(s);
    if (sv == "t" || sv == "f") return sv == "t" ? 1 : 0;
    std::from_chars(sv.data(), sv.data() + sv.size(), v);
    return v;
  };
  if (PQserverVersion(c) < 100000) {
    return Error(ErrorCode::kInvalidConfiguration, "postgresql: the server (" + target + ") is version " +
                                                       std::to_string(PQserverVersion(c)) +
                                                       "; Idem needs PostgreSQL 10 or later");
  }
  Result<long long> has_table = read_int(sql::kVersionTableExists, "looking for the schema version table");
  if (!has_table) return std::move(has_table).error();
  Result<long long> version =
      *has_table == 0 ? Result<long long>(-1) : read_int(sql::kReadVersion, "reading the schema version");
  if (!version) return std::move(version).error();
  if (*version == sql::kSchemaVersion) return ok_status();
  auto too_new = [&](long long v) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "postgresql: schema '" + o.schema + "' (" + target + ") has version " + std::to_string(v) +
                     " but this Idem understands up to " + std::to_string(sql::kSchemaVersion) +
                     "; it was written by a newer Idem: upgrade Idem or use another schema");
  };
  if (*version > sql::kSchemaVersion) return too_new(*version);
  if (!o.migrate) {
    // Missing: kNotFound, as for every store opened without creating (a
    // mistyped schema in `idem list` must not create an empty one).
    return Error(*version < 0 ? ErrorCode::kNotFound : ErrorCode::kInvalidConfiguration,
                 "postgresql: schema '" + o.schema + "' (" + target + ") is " +
                     (*version < 0 ? std::string("missing") : "at version " + std::to_string(*version)) +
                     " and this open may not create or upgrade it (migrate=0, or an inspection command); check the "
                     "schema name, or open once with a role allowed to migrate (migrate=1), or apply the SQL in "
                     "docs/postgres.md");
  }
  auto rollback = [&](Error e) -> Status {
    pg::ResultPtr r(PQexec(c, "ROLLBACK"));
    return e;
  };
  if (Result<pg::ResultPtr> r = exec("BEGIN", "starting the schema transaction"); !r) return std::move(r).error();
  if (Result<pg::ResultPtr> r = exec(sql::kMigrationLock, "locking the schema for migration"); !r) {
    return rollback(std::move(r).error());
  }
  Result<long long> exists = read_int(sql::kSchemaExists, "looking for the schema");
  if (!exists) return rollback(std::move(exists).error());
  if (*exists == 0) {
    // Only when missing: CREATE SCHEMA IF NOT EXISTS checks the CREATE
    // privilege on the database even when the schema is there.
    if (Result<pg::ResultPtr> r = exec(sql::kCreateSchema, "creating the schema"); !r) {
      return rollback(std::move(r).error());
    }
  }
  if (Result<pg::ResultPtr> r = exec(sql::kCreateVersionTable, "creating the version table"); !r) {
    return rollback(std::move(r).error());
  }
  Result<long long> locked = read_int(sql::kReadVersion, "reading the schema version");
  if (!locked) return rollback(std::move(locked).error());
  if (*locked > sql::kSchemaVersion) return rollback(too_new(*locked));
  for (long long v = *locked + 1; v <= sql::kSchemaVersion; ++v) {
    if (Result<pg::ResultPtr> r = exec(sql::kMigrations[static_cast<std::size_t>(v - 1)], "migrating the schema"); !r) {
      return rollback(std::move(r).error());
    }
  }
  if (Result<pg::ResultPtr> r = exec("COMMIT", "committing the schema"); !r) return std::move(r).error();
  return ok_status();
}

}  // namespace

Result<std::shared_ptr<Store>> PostgresStore::create(PostgresStoreOptions options) {
  if (Status s = options.validate(); !s) return std::move(s).error();
  const std::string target = pg::describe_target(options);
  pg::ConnPtr conn;
  {
    const pg::ConnParams params(options, true);
    conn.reset(PQconnectdbParams(params.keywords(), params.values(), 0));
  }
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) return pg::connection_error(conn.get(), "connecting", target);
  pg::quiet(conn.get());
  if (Status s = setup_schema(conn.get(), options, target); !s) return std::move(s).error();

  auto core = std::make_shared<Core>();
  core->options = options;
  core->target = target;
  core->breaker =
      std::make_shared<pg::CircuitBreaker>(pg::breaker_settings(options.circuit_breaker), options.on_circuit_change);
  core->tx_pool =
      std::make_shared<pg::TxPool>(options, target, sql::render(sql::kCompleteSql, options.schema), core->breaker);
  core->tx_pool->adopt(std::move(conn));

  pg::LoopConfig cfg;
  cfg.options = options;
  cfg.target = target;
  for (const sql::StatementDef& def : sql::kStatements)
    cfg.statement_texts.push_back(sql::render(def.text, options.schema));
  cfg.listen_sql = "LISTEN " + sql::channel_identifier(options.schema);
  std::weak_ptr<Core> weak = core;
  cfg.on_notify = [weak](std::string_view payload) {
    if (auto c = weak.lock()) c->on_notify(payload);
  };
  cfg.on_sweep_tick = [weak] {
    auto c = weak.lock();
    if (!c || c->sweeping.exchange(true)) return;
    run_sweep_batches(c, 0, [c](const Result<SweepReport>&) { c->sweeping.store(false); });
  };
  core->loop = std::make_shared<IoLoop>(std::move(cfg));
  core->loop->start();
  return std::shared_ptr<Store>(std::make_shared<PostgresStoreImpl>(std::move(core)));
}

Result<std::shared_ptr<Store>> PostgresStore::open(std::string_view url) { return open(url, OpenOptions{}); }

Result<std::shared_ptr<Store>> PostgresStore::open(std::string_view url, const OpenOptions& open_options) {
  Result<PostgresStoreOptions> options = parse_url(url);
  if (!options) return std::move(options).error();
  if (!open_options.create_if_missing) options->migrate = false;
  return create(std::move(*options));
}

bool PostgresStore::is_postgres(const Store& store) noexcept {
  return dynamic_cast<const PostgresStoreImpl*>(&store) != nullptr;
}

std::optional<PostgresClientStats> PostgresStore::client_stats(const Store& store) {
  const auto* impl = dynamic_cast<const PostgresStoreImpl*>(&store);
  if (impl == nullptr) return std::nullopt;
  const pg::LoopStats s = impl->core()->loop->stats();
  return PostgresClientStats{
      s.ops, s.round_trips, s.connects, s.broken, impl->core()->breaker->rejected(), impl->core()->breaker->state()};
}

namespace pg {
std::shared_ptr<TxPool> tx_pool_of(Store& store) {
  auto* impl = dynamic_cast<PostgresStoreImpl*>(&store);
  return impl == nullptr ? nullptr : impl->core()->tx_pool;
}
}  // namespace pg

}  // namespace idem
