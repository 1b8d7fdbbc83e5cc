// File: src/stores/postgres/io_loop.h
//
// IoLoop is the PostgreSQL store's one I/O thread. It owns up to pool_size
// connections in libpq pipeline mode (non-blocking) and runs every store call
// as an Op: a few prepared statements followed by one Sync, so each Op is one
// implicit transaction (or a few, see Statement::sync_after) and one round
// trip, and the Ops of concurrent callers travel together on the same
// connections without waiting for each other's answers. A separate connection LISTENs for settle notifications.
//
// Threading: submit() may be called from any thread (also from an Op's
// completion); completions run on the I/O thread and must not block.
//
// run_direct() is the synchronous callers' shortcut: it runs an Op on the
// calling thread over a connection that has nothing in flight, so that a
// blocking call costs what a blocking libpq call costs, instead of two
// thread handoffs (which dominate on a loaded machine; see
// docs/postgres.md). Each connection has a mutex: the I/O thread holds it
// while the connection has work in flight (or is being opened) and lets go
// of idle ones, which it then does not watch; a direct caller try-locks an
// idle, ready one and otherwise falls back to submit().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/error.h"
#include "idem/stores/postgres.h"
#include "stores/postgres/connection.h"
#include "stores/postgres/sql.h"

namespace idem::pg {

using SteadyClock = std::chrono::steady_clock;

// One statement of an Op: a prepared statement with binary parameters
// (nullopt is SQL NULL).
struct Statement {
  postgres_sql::Stmt id = postgres_sql::Stmt::kPing;
  std::vector<std::optional<std::string>> params{};
  // Commit after this statement (a Sync of its own, still in the same round
  // trip): the statements after it run in a transaction of their own.
  bool sync_after = false;
};

// An Op's answer: one result per statement, or the first error.
using OpResults = Result<std::vector<ResultPtr>>;

struct Op {
  std::vector<Statement> statements{};
  std::function<void(OpResults)> done{};  // runs on the I/O thread, exactly once
  std::chrono::milliseconds timeout{0};   // queueing + round trip; 0: none
  const char* what = "a store call";      // for error messages
  SteadyClock::time_point deadline{};     // set by submit()
  // Set before `done` runs when the server answered the Op (an SQL error
  // included), as opposed to no answer at all (refused, broken, timed out):
  // what the circuit breaker counts.
  bool answered = false;
};

struct LoopConfig {
  PostgresStoreOptions options{};
  std::string target{};                               // describe_target(), for messages
  std::vector<std::string> statement_texts{};         // rendered SQL, indexed by Stmt
  std::string listen_sql{};                           // LISTEN "channel"
  std::function<void(std::string_view)> on_notify{};  // I/O thread: a NOTIFY payload
  std::function<void()> on_sweep_tick{};              // I/O thread, every options.sweep_interval
};

// Counters for tests and benchmarks.
struct LoopStats {
  std::uint64_t ops = 0;          // Ops answered (or failed)
  std::uint64_t round_trips = 0;  // Syncs answered: one per Op
  std::uint64_t connects = 0;     // connections established
  std::uint64_t broken = 0;       // connections closed after an error or timeout
};

class IoLoop : public std::enable_shared_from_this<IoLoop> {
 public:
  explicit IoLoop(LoopConfig config);
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // start() spawns the thread; stop() ends it, failing whatever is still
  // queued or in flight with kUnavailable. stop() may run on the I/O thread
  // itself (a completion dropping the last reference to the store).
  void start();
  void stop();

  // submit() queues `op`. After stop() it fails at once, on this thread.
  void submit(std::unique_ptr<Op> op);

  // run_direct() runs `op` on this thread if a connection is idle and
  // ready; its completion runs here too. false (and `op` untouched) when
  // none is: submit() it then.
  bool run_direct(std::unique_ptr<Op>& op);

  // ensure_listening() brings up the LISTEN connection if it is not up;
  // `done(true)` once notifications are in force, `done(false)` when the
  // connection failed (callers fall back to polling). Runs on the I/O thread.
  void ensure_listening(std::function<void(bool)> done);

  bool on_io_thread() const noexcept { return std::this_thread::get_id() == thread_id_.load(); }
  LoopStats stats() const;

 private:
  enum class ConnState : std::uint8_t { kIdle, kConnecting, kSetup, kReady };
  struct InFlight {
    std::unique_ptr<Op> op;  // null for the connection's setup
    std::size_t statements = 0;
    std::size_t next = 0;  // statements whose results are complete
    bool got = false;      // the current statement produced its result
    std::vector<ResultPtr> results;
    std::optional<Error> error;
  };
  struct Conn {
    // Held by the I/O thread while `owned`, or by a direct caller while it
    // runs an Op; every other field is touched only by the holder.
    std::mutex m;
    bool owned = false;  // I/O thread only
    ConnPtr pg;
    ConnState state = ConnState::kIdle;
    PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
    std::deque<InFlight> inflight;
    bool want_write = false;
    bool listener = false;
    SteadyClock::time_point connect_deadline{};
  };

  void run();
  void take_incoming(std::unique_lock<std::mutex>& lock);
  void dispatch(SteadyClock::time_point now);
  bool start_connect(Conn& c, SteadyClock::time_point now);
  void on_connect_event(Conn& c);
  void begin_setup(Conn& c);
  bool send_op(Conn& c, std::unique_ptr<Op> op);
  void flush(Conn& c);
  void on_readable(Conn& c);
  enum class Pump : std::uint8_t { kOk, kBroken, kSetupFailed };
  // pump() reads what arrived and moves the Ops it finished to `finished`
  // (their completions are the caller's to run, after pump()).
  Pump pump(Conn& c, std::vector<InFlight>& finished, Error& error);
  bool send_statements(PGconn* pg, const Op& op);
  bool own(Conn& c);
  void release_idle();
  void wake();
  // Records whether LISTEN is in force and answers the waiting requests.
  void set_listening(bool ready);
  void finish(InFlight& f);
  void break_conn(Conn& c, const Error& why, bool timed_out);
  void connect_failed(Conn& c, const Error& why);
  void fail_pending(const Error& why);
  void check_timers(SteadyClock::time_point now);
  void fail_everything(const Error& why);
  static void deliver(Op& op, OpResults results) noexcept;

  LoopConfig cfg_;
  std::vector<Conn> conns_;
  Conn listener_;
  bool listener_ready_ = false;
  bool closed_ = false;  // the loop has ended: listen requests are answered false
  std::vector<std::function<void(bool)>> listen_waiters_;
  std::deque<std::unique_ptr<Op>> pending_;
  SteadyClock::time_point next_sweep_{};

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Op>> incoming_;  // guarded by mutex_
  std::vector<std::function<void()>> tasks_;   // guarded by mutex_
  bool stopping_ = false;                      // guarded by mutex_
  std::atomic<bool> stopped_{false};           // stopping_, for run_direct()
  std::atomic<std::size_t> waiting_{0};        // pending_.size(), for run_direct()
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<std::uint64_t> ops_{0};
  std::atomic<std::uint64_t> round_trips_{0};
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::uint64_t> broken_{0};
};

}  // namespace idem::pg
