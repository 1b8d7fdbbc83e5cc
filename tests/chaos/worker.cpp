// A chaos worker; see worker.h.
#include "chaos/worker.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "chaos/history.h"
#include "chaos/store_env.h"
#include "chaos/unfenced_store.h"
#include "idem/core/store.h"
#ifdef IDEM_CHAOS_HAVE_POSTGRES
#include "idem/stores/postgres.h"
#endif

namespace idem::chaos {
namespace {

using std::chrono::milliseconds;

std::int64_t now_ms() { return now_us() / 1000; }

std::string code_name(const Error& e) { return std::string(to_string(e.code())); }

// The result a worker stores names its token, so that every reader can tell
// whose completion it sees.
std::string result_for(Token token) { return "t=" + std::to_string(token); }
std::int64_t result_token(const std::optional<std::string>& result) {
  if (!result || result->rfind("t=", 0) != 0) return 0;
  std::int64_t t = 0;
  std::from_chars(result->data() + 2, result->data() + result->size(), t);
  return t;
}

// status_word() names a record's state for get.ok and final lines.
std::string status_word(const std::optional<IdempotencyRecord>& r) {
  if (!r) return "absent";
  switch (r->status) {
    case ProcessingStatus::kProcessing: return "processing";
    case ProcessingStatus::kCompleted: return "completed";
    case ProcessingStatus::kFailed: return r->retryable ? "failed" : "failed_terminal";
  }
  return "unknown";
}

struct Delivery {
  std::int64_t key = 0;
  std::int64_t due_ms = 0;
};

// Inbox hands out deliveries: redeliveries that are due first, then new picks
// from the stream (or, in drain mode, from the key list).
class Inbox {
 public:
  Inbox(const WorkerOptions& o, std::vector<std::int64_t> drain_keys) : o_(o) {
    for (std::int64_t k : drain_keys) retries_.push_back({k, 0});
    drain_ = !o.keys_file.empty();
  }

  // next() returns false when this thread should stop.
  bool next(std::mt19937_64& rng, Delivery& out) {
    std::unique_lock lock(mutex_);
    while (true) {
      const std::int64_t now = now_ms();
      if (o_.deadline_ms > 0 && now >= o_.deadline_ms) {
        gave_up_ = gave_up_ || !retries_.empty() || in_flight_ > 0;
        return false;
      }
      auto due = std::min_element(retries_.begin(), retries_.end(),
                                  [](const Delivery& a, const Delivery& b) { return a.due_ms < b.due_ms; });
      if (due != retries_.end() && due->due_ms <= now) {
        out = *due;
        retries_.erase(due);
        ++in_flight_;
        return true;
      }
      if (!drain_ && now < o_.until_ms) {
        const std::int64_t newest = (now - o_.t0_ms) / std::max(1, o_.key_interval_ms);
        std::uniform_int_distribution<std::int64_t> back(0, std::max(1, o_.window) - 1);
        out = {std::max<std::int64_t>(0, newest - back(rng)), now};
        ++in_flight_;
        return true;
      }
      if (retries_.empty() && in_flight_ == 0) {
        changed_.notify_all();
        return false;
      }
      // Wait for a redelivery to fall due, or for another thread to add one.
      const std::int64_t wake = due != retries_.end() ? due->due_ms : now + 50;
      changed_.wait_for(lock, milliseconds(std::clamp<std::int64_t>(wake - now, 1, 50)));
    }
  }

  void ack() {
    std::lock_guard lock(mutex_);
    --in_flight_;
    changed_.notify_all();
  }
  void nak(std::int64_t key, int delay_ms) {
    std::lock_guard lock(mutex_);
    --in_flight_;
    retries_.push_back({key, now_ms() + delay_ms});
    changed_.notify_all();
  }
  bool gave_up() {
    std::lock_guard lock(mutex_);
    return gave_up_;
  }

 private:
  const WorkerOptions& o_;
  bool drain_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Delivery> retries_;
  int in_flight_ = 0;
  bool gave_up_ = false;
};

class Worker {
 public:
  Worker(const WorkerOptions& o, std::shared_ptr<Store> store, HistoryWriter& history)
      : o_(o), store_(std::move(store)), history_(history) {}

  // run_thread() is one logical client of the history ("<pid>.<index>").
  void run_thread(int index, Inbox& inbox) {
    const std::string proc = std::to_string(::getpid()) + "." + std::to_string(index);
    std::mt19937_64 rng(o_.seed * std::uint64_t{1000003} + static_cast<std::uint64_t>(index));
    Delivery d;
    while (inbox.next(rng, d)) {
      const std::optional<int> redeliver = deliver(proc, d.key, rng);
      if (redeliver) {
        inbox.nak(d.key, *redeliver);
      } else {
        inbox.ack();
      }
      if (o_.pause_max_ms > 0) {
        std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, o_.pause_max_ms)(rng)));
      }
    }
  }

  // audit() records the final state of every key (after the drain).
  void audit(const std::vector<std::int64_t>& keys) {
    const std::string proc = std::to_string(::getpid()) + ".audit";
    for (std::int64_t k : keys) {
      const std::string key = o_.prefix + std::to_string(k);
      Result<std::optional<IdempotencyRecord>> r = Error(ErrorCode::kInternal, "not read");
      for (int attempt = 0; attempt < 50; ++attempt) {
        r = store_->get(key);
        if (r.ok()) break;
        std::this_thread::sleep_for(milliseconds(100));
      }
      if (!r) {
        log(proc, op::kFinal, k, 0, "error:" + code_name(r.error()), 0);
        continue;
      }
      const auto& rec = *r;
      log(proc, op::kFinal, k, rec ? rec->token : 0, status_word(rec), rec ? result_token(rec->result) : 0);
      if (o_.transactional) audit_rows(proc, k);
    }
  }

 private:
  void log(const std::string& proc, std::string_view what, std::int64_t key, Token token, std::string status,
           std::int64_t aux) {
    Event e;
    e.proc = proc;
    e.op = std::string(what);
    e.key = key;
    e.token = token;
    e.status = std::move(status);
    e.aux = aux;
    history_.write(std::move(e));
  }

#ifdef IDEM_CHAOS_HAVE_POSTGRES
  // insert_row() writes the effect of `token` on key `k` in `tx`.
  static Status insert_row(PostgresTransaction& tx, std::int64_t k, Token token) {
    const std::string key = std::to_string(k);
    const std::string tok = std::to_string(token);
    auto r = tx.exec("INSERT INTO " + std::string(kChaosEffectsTable) + " (key, token) VALUES ($1, $2)", {key, tok});
    if (!r) return std::move(r).error();
    return ok_status();
  }

  // begin_effect() starts the effect of transactional mode: a transaction
  // with the row written in it, to be committed with the completion. With
  // the planted split-commit bug the row commits at once and no transaction
  // is returned.
  Result<std::optional<PostgresTransaction>> begin_effect(std::int64_t k, Token token) {
    auto tx = PostgresTransaction::begin(*store_);
    if (!tx) return std::move(tx).error();
    if (Status st = insert_row(*tx, k, token); !st) return std::move(st).error();
    if (!o_.split_commit) return std::optional<PostgresTransaction>(std::move(*tx));
    if (Status st = tx->commit(); !st) return std::move(st).error();
    return std::optional<PostgresTransaction>();
  }

  // audit_rows() records every committed effect of key `k`.
  void audit_rows(const std::string& proc, std::int64_t k) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      auto tx = PostgresTransaction::begin(*store_);
      if (tx) {
        auto rows = tx->exec("SELECT token FROM " + std::string(kChaosEffectsTable) + " WHERE key = $1 ORDER BY token",
                             {std::to_string(k)});
        if (rows) {
          for (std::size_t i = 0; i < rows->rows(); ++i) {
            std::int64_t token = 0;
            const std::string_view v = rows->value(i, 0).value_or("0");
            std::from_chars(v.data(), v.data() + v.size(), token);
            log(proc, op::kRow, k, static_cast<Token>(token), "-", 0);
          }
          return;
        }
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    log(proc, op::kFinal, k, 0, "error:rows", 0);
  }
#else
  struct NoTransaction {
    Status commit_completed(const CompleteRequest&) { return ok_status(); }
  };
  Result<std::optional<NoTransaction>> begin_effect(std::int64_t, Token) {
    return Error(ErrorCode::kInvalidConfiguration, "transactional mode needs the PostgreSQL store");
  }
  void audit_rows(const std::string& proc, std::int64_t k) { log(proc, op::kFinal, k, 0, "error:rows", 0); }
#endif

  [[noreturn]] void crash(const std::string& proc, std::int64_t key, Token token, const char* phase) {
    log(proc, op::kCrash, key, token, phase, 0);
    ::kill(::getpid(), SIGKILL);
    std::abort();  // not reached
  }

  void sleep_ms(int ms) { std::this_thread::sleep_for(milliseconds(ms)); }

  // deliver() handles one delivery; it returns a redelivery delay (a nak) or
  // nothing (an ack).
  std::optional<int> deliver(const std::string& proc, std::int64_t k, std::mt19937_64& rng) {
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    auto between = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, std::max(lo, hi))(rng); };
    const std::string key = o_.prefix + std::to_string(k);

    ClaimRequest req;
    req.key = key;
    req.event_id = key;
    req.event_type = "chaos";
    req.lease = milliseconds(o_.lease_ms);
    req.ttl = std::chrono::hours(6);
    log(proc, op::kClaimInv, k, 0, "-", 0);
    Result<ClaimOutcome> claimed = store_->claim(req);
    if (!claimed) {
      log(proc, op::kClaimErr, k, 0, code_name(claimed.error()), 0);
      return between(50, 200);
    }
    const ClaimOutcome& c = *claimed;
    if (!c.acquired()) {
      const Token rec_token = c.record ? c.record->token : 0;
      std::int64_t aux = 0;
      if (c.record && c.status == ClaimStatus::kCompleted) aux = result_token(c.record->result);
      if (c.record && c.status == ClaimStatus::kInProgress) aux = c.record->lease_expires_at.time_since_epoch().count();
      log(proc, op::kClaimOk, k, rec_token, std::string(to_string(c.status)), aux);
      switch (c.status) {
        case ClaimStatus::kCompleted:
        case ClaimStatus::kFailed: return std::nullopt;
        default: return between(o_.lease_ms / 4, o_.lease_ms / 2);  // in progress: nak with delay
      }
    }
    const Token token = c.token;
    std::int64_t lease_end_ms = c.lease_expires_at.time_since_epoch().count();
    log(proc, op::kClaimOk, k, token, std::string(to_string(c.acquire_kind)), lease_end_ms);

    const bool crashing = chance(o_.crash_rate);
    const int crash_phase = between(0, 2);
    if (crashing && crash_phase == 0) crash(proc, k, token, "after_claim");

    // The handler's verdict is decided before the effect: a failing handler
    // has no effect, so every duplicate of an effect needs a fault to explain it.
    const bool terminal = o_.terminal_every > 0 && k % o_.terminal_every == 0;
    if (terminal || chance(o_.fail_rate)) {
      FailRequest f;
      f.key = key;
      f.token = token;
      f.error = terminal ? "terminal" : "transient";
      f.retryable = !terminal;
      f.ttl = req.ttl;
      const std::string kind = terminal ? "terminal" : "retryable";
      log(proc, op::kFailInv, k, token, kind, 0);
      Status st = store_->fail(f);
      if (st) {
        log(proc, op::kFailOk, k, token, kind, 0);
        return terminal ? std::nullopt : std::optional<int>(between(20, 100));
      }
      log(proc, op::kFailErr, k, token, code_name(st.error()), 0);
      return between(50, 200);
    }

    // The effect: the history line is the side effect itself, so the history
    // never misses one (a crash right after it leaves it on record). In
    // transactional mode it is an attempt: the row written in the transaction
    // that completes the key, which commits with the completion or never.
    // There the transaction is the completion, so a failure to begin it or
    // write the row is recorded as the completion's error.
    log(proc, op::kEffectBegin, k, token, "-", 0);
    auto tx = decltype(begin_effect(k, token))(std::nullopt);
    if (o_.transactional) {
      tx = begin_effect(k, token);
      if (!tx) {
        log(proc, op::kEffectEnd, k, token, "aborted", 0);
        log(proc, op::kCompleteInv, k, token, "-", 0);
        log(proc, op::kCompleteErr, k, token, code_name(tx.error()), 0);
        return between(50, 200);
      }
    }
    sleep_ms(between(o_.effect_min_ms, o_.effect_max_ms) / 2);
    if (crashing && crash_phase == 1) crash(proc, k, token, "mid_effect");
    if (chance(o_.extend_rate)) {
      const std::int64_t inv = now_ms();
      log(proc, op::kExtendInv, k, token, "-", 0);
      Status st = store_->extend(key, token, milliseconds(o_.lease_ms));
      if (st) {
        lease_end_ms = std::max(lease_end_ms, inv + o_.lease_ms);
        log(proc, op::kExtendOk, k, token, "-", inv + o_.lease_ms);
      } else {
        log(proc, op::kExtendErr, k, token, code_name(st.error()), 0);
        if (st.error().code() == ErrorCode::kLeaseLost) {
          // Someone took over: a real handler stops here.
          log(proc, op::kEffectEnd, k, token, "aborted", 0);
          return between(50, 200);
        }
      }
    }
    sleep_ms(between(o_.effect_min_ms, o_.effect_max_ms) / 2);
    log(proc, op::kEffectEnd, k, token, "-", 0);
    if (crashing && crash_phase == 2) crash(proc, k, token, "after_effect");

    if (tx.ok() && tx->has_value()) {
      // Transactional mode: the row and the COMPLETED record commit together,
      // fenced by the token. After an error the outcome may be unknown (the
      // commit was sent): the redelivery finds the key completed or takes it
      // over, so nothing is retried here.
      CompleteRequest done;
      done.key = key;
      done.token = token;
      const std::string result = result_for(token);
      done.result = result;
      done.ttl = req.ttl;
      log(proc, op::kCompleteInv, k, token, "-", 0);
      Status st = (*tx)->commit_completed(done);
      if (st) {
        log(proc, op::kCompleteOk, k, token, "-", 0);
        return std::nullopt;
      }
      log(proc, op::kCompleteErr, k, token, code_name(st.error()), 0);
      return between(50, 200);
    }

    // Completion, retried on store errors while the lease may still be ours
    // (plus one lease of grace: with nobody taking over it still lands).
    CompleteRequest done;
    done.key = key;
    done.token = token;
    const std::string result = result_for(token);
    done.result = result;
    done.ttl = req.ttl;
    for (int attempt = 0;; ++attempt) {
      log(proc, op::kCompleteInv, k, token, "-", 0);
      Status st = store_->complete(done);
      if (st) {
        log(proc, op::kCompleteOk, k, token, "-", 0);
        return std::nullopt;
      }
      log(proc, op::kCompleteErr, k, token, code_name(st.error()), 0);
      if (st.error().code() == ErrorCode::kLeaseLost) {
        if (attempt == 0) return between(50, 200);
        // A retry after an error: the first attempt may have landed.
        auto r = store_->get(key);
        if (!r) {
          log(proc, op::kGetErr, k, token, code_name(r.error()), 0);
          return between(50, 200);
        }
        const auto& rec = *r;
        const std::int64_t seen = rec ? result_token(rec->result) : 0;
        log(proc, op::kGetOk, k, rec ? rec->token : 0, status_word(rec), seen);
        return (rec && rec->status == ProcessingStatus::kCompleted && seen == static_cast<std::int64_t>(token))
                   ? std::nullopt
                   : std::optional<int>(between(50, 200));
      }
      if (!st.error().retryable() || now_ms() > lease_end_ms + o_.lease_ms) return between(50, 200);
      sleep_ms(between(20, 60));
    }
  }

  const WorkerOptions& o_;
  std::shared_ptr<Store> store_;
  HistoryWriter& history_;
};

std::vector<std::int64_t> read_keys(const std::string& path) {
  std::vector<std::int64_t> keys;
  std::ifstream in(path);
  for (std::int64_t k; in >> k;) keys.push_back(k);
  return keys;
}

}  // namespace

int run_worker(const WorkerOptions& options) {
  // A worker must not outlive the harness that checks it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) return 2;
  std::string error;
  auto history = HistoryWriter::open(options.history, &error);
  if (!history) {
    std::cerr << "chaos worker: " << error << "\n";
    return 2;
  }
  auto opened = open_store(options.url);
  if (!opened) {
    std::cerr << "chaos worker: cannot open " << options.url << ": " << opened.error().to_string() << "\n";
    return 2;
  }
  std::shared_ptr<Store> store = *opened;
  if (options.unfenced) store = make_unfenced_store(std::move(store));

  std::vector<std::int64_t> keys;
  if (!options.keys_file.empty()) keys = read_keys(options.keys_file);
  Worker worker(options, store, *history);
  Inbox inbox(options, keys);
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    threads.emplace_back([&, i] { worker.run_thread(i, inbox); });
  }
  for (auto& t : threads) t.join();
  if (options.audit) worker.audit(keys);
  return inbox.gave_up() ? 3 : 0;
}

}  // namespace idem::chaos
