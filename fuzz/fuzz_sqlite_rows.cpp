// File: fuzz/fuzz_sqlite_rows.cpp
//
// libFuzzer target for the SQLite store's row decoding: what happens when the
// bytes in the file are not what Idem wrote (another program, a bad restore,
// a hand edit, a disk error that SQLite did not catch). The input becomes
// rows of the `records` table, each column of any SQLite type (NULL,
// integer, real, text, blob) with any value, plus the token floor; then every
// operation that reads rows runs on them: get, scan, stats, claim (its
// ON CONFLICT arithmetic and RETURNING), complete, fail, extend, checkpoint,
// remove and sweep.
//
// Beyond "does not crash" (ASan, UBSan) it checks that a failure is a typed
// error with a message, that a record read back is the one asked for, and
// that what a claim acquires carries a token above the stored one.
//
// The store runs on a ManualClock, so a crash reproduces exactly.
#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "idem/core/clock.h"
#include "idem/core/error.h"
#include "idem/core/store.h"
#include "idem/stores/sqlite.h"
#include "scratch_dir.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_sqlite_rows: %s %s\n", what, detail.c_str());
  std::abort();
}

// The columns of `records`, in table order (see src/stores/sqlite/sql.h).
constexpr int kColumns = 17;
constexpr const char* kInsert =
    "INSERT OR REPLACE INTO records (key, event_id, event_type, status, result, error, retryable, first_seen_at, "
    "completed_at, attempt, token, lease_expires_at, fingerprint, expires_at, checkpoint_name, checkpoint_data, "
    "acquire_kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

// The keys rows are stored under: a few fixed ones, so that operations find
// them, and any other the fuzzer likes.
const char* const kKeys[] = {"k", "idempotency:events:a", "", "k2"};

struct World {
  idem::fuzz::ScratchDir dir{"rows"};
  std::shared_ptr<idem::Store> store;
  sqlite3* raw = nullptr;
  sqlite3_stmt* insert = nullptr;

  World() {
    const std::string path = (dir.path() / "idem.db").string();
    auto clock = std::make_shared<idem::ManualClock>();  // 2023-11-14T22:13:20Z
    auto s = idem::SqliteStore::create({.path = path, .max_connections = 1, .clock = clock});
    if (!s) fail("cannot create the store", s.error().to_string());
    store = *s;
    if (sqlite3_open(path.c_str(), &raw) != SQLITE_OK) fail("sqlite3_open");
    sqlite3_busy_timeout(raw, 5'000);
    // The setup writes need no durability; syncing each one made runs slow.
    exec("PRAGMA synchronous=OFF");
    if (sqlite3_prepare_v2(raw, kInsert, -1, &insert, nullptr) != SQLITE_OK) fail("prepare", sqlite3_errmsg(raw));
  }
  ~World() {
    sqlite3_finalize(insert);
    sqlite3_close(raw);
    store.reset();  // before the directory goes
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err != nullptr ? err : "?";
      sqlite3_free(err);
      fail("setup statement failed:", sql + ": " + msg);
    }
  }
};

World& world() {
  static World w;  // destroyed at exit, which removes the directory
  return w;
}

// bind_value() binds one fuzzed value of any SQLite type.
void bind_value(sqlite3_stmt* st, int index, FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: sqlite3_bind_null(st, index); break;
    case 1: sqlite3_bind_int64(st, index, in.ConsumeIntegral<std::int64_t>()); break;
    case 2: sqlite3_bind_int64(st, index, in.ConsumeIntegralInRange<std::int64_t>(-2, 2'000'000'000'000)); break;
    case 3: sqlite3_bind_double(st, index, in.ConsumeFloatingPoint<double>()); break;
    case 4: {
      const std::string text = in.ConsumeRandomLengthString(64);
      sqlite3_bind_text(st, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
      break;
    }
    default: {
      const std::string bytes = in.ConsumeRandomLengthString(64);
      sqlite3_bind_blob(st, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
      break;
    }
  }
}

// A plausible value for the columns that decide the state machine, so that
// the fuzzer reaches the operations' interesting branches quickly.
void bind_plausible(sqlite3_stmt* st, int column, FuzzedDataProvider& in) {
  static const char* const kStatus[] = {"PROCESSING", "COMPLETED", "FAILED", "processing", "DONE"};
  const std::int64_t now = 1'700'000'000'000;
  switch (column) {
    case 3: {
      const char* s = kStatus[in.ConsumeIntegralInRange<std::size_t>(0, 4)];
      sqlite3_bind_text(st, column + 1, s, -1, SQLITE_STATIC);
      break;
    }
    case 6:
    case 16: sqlite3_bind_int64(st, column + 1, in.ConsumeIntegralInRange<std::int64_t>(0, 2)); break;
    case 9:
    case 10: sqlite3_bind_int64(st, column + 1, in.ConsumeIntegralInRange<std::int64_t>(0, 10)); break;
    case 7:
    case 8:
    case 11:
    case 13:
      sqlite3_bind_int64(st, column + 1, now + in.ConsumeIntegralInRange<std::int64_t>(-100'000, 100'000));
      break;
    default: bind_value(st, column + 1, in); break;
  }
}

void check_error(const idem::Error& e, const char* op) {
  if (e.message().empty()) fail("an error without a message from", op);
  if (e.code() == idem::ErrorCode::kOk) fail("an error with code ok from", op);
}

void check_record(const idem::IdempotencyRecord& r, const std::string& key, const char* op) {
  if (r.idempotency_key != key) fail("read back another record's key via", op);
  (void)idem::format_rfc3339(r.first_seen_at);  // what `idem get` prints
  (void)idem::format_rfc3339(r.lease_expires_at);
  (void)idem::format_rfc3339(r.expires_at);
  if (r.completed_at) (void)idem::format_rfc3339(*r.completed_at);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  FuzzedDataProvider in(data, size);
  w.exec("BEGIN IMMEDIATE; DELETE FROM records");
  std::int64_t floor = 0;
  if (in.ConsumeBool()) {
    floor = in.ConsumeBool() ? in.ConsumeIntegral<std::int64_t>() : in.ConsumeIntegralInRange<std::int64_t>(0, 100);
  }
  w.exec("UPDATE meta SET value = " + std::to_string(floor) + " WHERE name = 'token_floor'");

  std::vector<std::string> keys;
  const int rows = in.ConsumeIntegralInRange<int>(1, 3);
  for (int row = 0; row < rows; ++row) {
    sqlite3_reset(w.insert);
    sqlite3_clear_bindings(w.insert);
    std::string key = in.ConsumeBool() ? std::string(kKeys[in.ConsumeIntegralInRange<std::size_t>(0, 3)])
                                       : in.ConsumeRandomLengthString(16);
    sqlite3_bind_text(w.insert, 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    const bool plausible = in.ConsumeBool();
    for (int column = 1; column < kColumns; ++column) {
      if (plausible) {
        bind_plausible(w.insert, column, in);
      } else {
        bind_value(w.insert, column + 1, in);
      }
    }
    // NOT NULL columns refuse some rows: the decoder never sees those.
    if (sqlite3_step(w.insert) == SQLITE_DONE) keys.push_back(std::move(key));
  }
  w.exec("COMMIT");
  if (keys.empty()) return 0;
  const std::string& key = keys[in.ConsumeIntegralInRange<std::size_t>(0, keys.size() - 1)];
  idem::Store& store = *w.store;

  std::optional<idem::IdempotencyRecord> before;
  if (auto got = store.get(key)) {
    before = *got;
    if (before) check_record(*before, key, "get");
  } else {
    check_error(got.error(), "get");
  }
  idem::ScanOptions scan;
  scan.limit = 10;
  if (auto page = store.scan(scan)) {
    for (const auto& r : page->records) check_record(r, r.idempotency_key, "scan");
  } else {
    check_error(page.error(), "scan");
  }
  if (auto stats = store.stats(); !stats) check_error(stats.error(), "stats");

  const idem::Token token = before ? before->token : in.ConsumeIntegral<idem::Token>();
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0: {
      idem::ClaimRequest req;
      req.key = key;
      req.event_id = "e";
      const std::string fingerprint = in.ConsumeRandomLengthString(8);
      req.fingerprint = fingerprint;
      auto out = store.claim(req);
      if (!out) {
        check_error(out.error(), "claim");
      } else if (out->acquired() && before) {
        // Tokens far from 2^63 must grow (a corrupt row may hold anything; at
        // the very top SQLite turns the + 1 into a REAL).
        const auto stored = static_cast<std::int64_t>(before->token);
        if (stored > 0 && stored < (std::int64_t{1} << 62) && out->token <= before->token) {
          fail("a claim acquired with a token not above the stored one", key);
        }
      } else if (out->record) {
        check_record(*out->record, key, "claim");
      }
      break;
    }
    case 1: {
      auto st = store.complete({.key = key, .token = token, .result = "r"});
      if (!st) check_error(st.error(), "complete");
      break;
    }
    case 2: {
      auto st = store.fail({.key = key, .token = token, .error = "x", .retryable = in.ConsumeBool()});
      if (!st) check_error(st.error(), "fail");
      break;
    }
    case 3: {
      auto st = store.extend(key, token, std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(0, 100'000)));
      if (!st) check_error(st.error(), "extend");
      break;
    }
    case 4: {
      auto st = store.checkpoint(key, token, {"n", "d"});
      if (!st) check_error(st.error(), "checkpoint");
      break;
    }
    case 5: {
      auto removed = store.remove(key);
      if (!removed) check_error(removed.error(), "remove");
      break;
    }
    default: {
      auto swept = store.sweep();
      if (!swept) check_error(swept.error(), "sweep");
      break;
    }
  }
  if (auto after = store.get(key); after && *after) check_record(**after, key, "get after");
  return 0;
}
