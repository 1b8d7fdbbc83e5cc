// File: bench/bench_support.h
//
// What the benchmark programs share: key formatting that costs the store
// nothing, a scratch directory for database files, and RawDb, raw
// libsqlite3 running the SQLite store's own statements (the limit the store
// and the guard on SQLite are measured against, in the same run).
#pragma once

#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/store.h"
#include "stores/sqlite/sql.h"

namespace idem_bench {

namespace fs = std::filesystem;

constexpr std::string_view kResult = R"({"status":"ok","charge_id":"ch_0123456789"})";

// KeyMaker formats "idempotency:events:<run>-<thread>-<n>" into a fixed
// buffer: the cost of making a key should not be charged to the store.
class KeyMaker {
 public:
  KeyMaker(std::uint64_t run, int thread) {
    std::memcpy(buf_, "idempotency:events:", kPrefix);
    char* p = buf_ + kPrefix;
    p = std::to_chars(p, buf_ + sizeof(buf_), run).ptr;
    *p++ = '-';
    p = std::to_chars(p, buf_ + sizeof(buf_), thread).ptr;
    *p++ = '-';
    base_ = static_cast<std::size_t>(p - buf_);
  }
  std::string_view next() {
    char* end = std::to_chars(buf_ + base_, buf_ + sizeof(buf_), n_++).ptr;
    return {buf_, static_cast<std::size_t>(end - buf_)};
  }

 private:
  static constexpr std::size_t kPrefix = 19;
  char buf_[96];
  std::size_t base_ = 0;
  std::uint64_t n_ = 0;
};

struct ScratchDb {
  ScratchDb() {
    std::string tmpl = (fs::temp_directory_path() / "idem-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir = tmpl;
    path = (dir / "bench.db").string();
  }
  ~ScratchDb() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path dir;
  std::string path;
};

// RawDb is the limit the SQLite store is measured against: raw libsqlite3
// running the very same statements (sql.h), schema and pragmas, with
// prepared statements and no store layer.
namespace sql = idem::sqlite_sql;

using KeyMakerRef = std::function<std::string_view()>;

struct RawDb {
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error("open");
    }
    sqlite3_busy_timeout(db, 5000);
    exec(std::string(sql::kConnectionPragmas));
    exec(std::string(sql::kSynchronousNormal));
    exec(std::string(sql::kCreateSchema));
    claim = prepare(sql::claim_sql(1));
    claim64 = prepare(sql::claim_sql(64, true));
    claim16 = prepare(sql::claim_sql(16, true));
    claim4 = prepare(sql::claim_sql(4, true));
    read_floor = prepare(sql::kReadFloor);
    get = prepare(sql::kGet);
    complete = prepare(sql::kComplete);
    begin = prepare(sql::kBegin);
    commit = prepare(sql::kCommit);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() {
    for (sqlite3_stmt* s : {claim, claim64, claim16, claim4, read_floor, get, complete, begin, commit}) {
      sqlite3_finalize(s);
    }
    sqlite3_close_v2(db);
  }
  void exec(const std::string& text) {
    if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) throw std::runtime_error(text);
  }
  sqlite3_stmt* prepare(std::string_view text) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db, text.data(), static_cast<int>(text.size()), SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
        SQLITE_OK) {
      throw std::runtime_error(sqlite3_errmsg(db));
    }
    return s;
  }
  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void bind_row(sqlite3_stmt* s, int row, std::string_view key, std::int64_t now) const {
    const int b = 2 + row * static_cast<int>(sql::kClaimParamsPerRow);
    sqlite3_bind_text(s, b, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, b + 1, "evt", 3, SQLITE_STATIC);
    sqlite3_bind_text(s, b + 2, "order.created", 13, SQLITE_STATIC);
    sqlite3_bind_text(s, b + 3, fingerprint.data(), static_cast<int>(fingerprint.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, b + 4, now + 30'000);
    sqlite3_bind_int64(s, b + 5, now + 86'400'000);
  }
  // Returns the token, or -1 when not acquired (then reads the record, as
  // the store does).
  std::int64_t run_claim(std::string_view key) {
    const std::int64_t now = now_ms();
    sqlite3_bind_int64(claim, 1, now);
    bind_row(claim, 0, key, now);
    std::int64_t token = -1;
    int rc = sqlite3_step(claim);
    if (rc == SQLITE_ROW) {
      token = sqlite3_column_int64(claim, 1);  // RETURNING key, token, ...
      rc = sqlite3_step(claim);
    }
    sqlite3_reset(claim);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
    if (token < 0) {
      sqlite3_bind_text(get, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
      rc = sqlite3_step(get);
      if (rc == SQLITE_ROW) {
        // Touch the result as a caller would.
        benchmark::DoNotOptimize(sqlite3_column_blob(get, 4));
        benchmark::DoNotOptimize(sqlite3_column_bytes(get, 4));
      }
      sqlite3_reset(get);
    }
    return token;
  }
  void run_complete(std::string_view key, std::int64_t token) {
    const std::int64_t now = now_ms();
    sqlite3_bind_text(complete, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(complete, 2, token);
    sqlite3_bind_blob(complete, 3, kResult.data(), static_cast<int>(kResult.size()), SQLITE_STATIC);
    sqlite3_bind_int64(complete, 4, now);
    sqlite3_bind_int64(complete, 5, now + 86'400'000);
    const int rc = sqlite3_step(complete);
    sqlite3_reset(complete);
    if (rc != SQLITE_DONE || sqlite3_changes(db) != 1) throw std::runtime_error("complete");
  }
  // One multi-row claim statement of `rows` new keys; returns rows acquired.
  int run_claim_rows(sqlite3_stmt* s, int rows, KeyMakerRef keys) {
    const std::int64_t now = now_ms();
    sqlite3_bind_int64(s, 1, now);
    for (int r = 0; r < rows; ++r) {
      key_storage_[static_cast<std::size_t>(r)] = keys();
      bind_row(s, r, key_storage_[static_cast<std::size_t>(r)], now);
    }
    sqlite3_bind_int64(s, 2 + rows * static_cast<int>(sql::kClaimParamsPerRow), floor);
    int got = 0;
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) ++got;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
    return got;
  }
  std::vector<std::string> key_storage_ = std::vector<std::string>(64);

  void step_once(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
  }

  // Bound as every claim's payload fingerprint; empty: not checked (what
  // the store-level benchmarks do). The guard's comparison binds one of the
  // guard's length, so that both write the same bytes.
  std::string fingerprint;
  sqlite3* db = nullptr;
  sqlite3_stmt* claim = nullptr;
  sqlite3_stmt* claim64 = nullptr;
  sqlite3_stmt* claim16 = nullptr;
  sqlite3_stmt* claim4 = nullptr;
  sqlite3_stmt* read_floor = nullptr;
  std::int64_t floor = 0;
  sqlite3_stmt* get = nullptr;
  sqlite3_stmt* complete = nullptr;
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
};

// A new event at the store level: claim + complete of fresh keys.
inline void run_store_new_events(benchmark::State& state, idem::Store& store, KeyMaker& keys) {
  for (auto _ : state) {
    const std::string_view key = keys.next();
    idem::ClaimRequest request;
    request.key = key;
    request.event_id = "evt";
    request.event_type = "order.created";
    request.lease = std::chrono::seconds(30);
    request.ttl = std::chrono::hours(24);
    idem::Result<idem::ClaimOutcome> out = store.claim(request);
    if (!out || !out->acquired()) {
      state.SkipWithError("claim did not acquire");
      break;
    }
    idem::CompleteRequest done;
    done.key = key;
    done.token = out->token;
    done.result = kResult;
    if (!store.complete(done)) state.SkipWithError("complete failed");
  }
  state.SetItemsProcessed(state.iterations());
}

// The limit of a new event: claim + complete of fresh keys, raw.
inline void run_raw_new_events(benchmark::State& state, RawDb& raw, KeyMaker& keys) {
  for (auto _ : state) {
    const std::string_view key = keys.next();
    const std::int64_t token = raw.run_claim(key);
    if (token < 0) {
      state.SkipWithError("not acquired");
      break;
    }
    raw.run_complete(key, token);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace idem_bench
