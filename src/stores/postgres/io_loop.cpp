#include "stores/postgres/io_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace idem::pg {
namespace {

int poll_timeout(SteadyClock::time_point now, SteadyClock::time_point until) {
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(std::max(until - now, SteadyClock::duration(0)));
  return static_cast<int>(std::min<long long>(wait.count(), INT_MAX));
}

std::string timed_out(const Op& op, const std::string& target) {
  return std::string("postgresql: ") + op.what + " (" + target + "): no answer within " +
         std::to_string(op.timeout.count()) +
         " ms; the connection was closed and the call may or may not have been applied (retry; check the "
         "server's load and locks)";
}

}  // namespace

IoLoop::IoLoop(LoopConfig config) : cfg_(std::move(config)), conns_(cfg_.options.pool_size) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  listener_.listener = true;
  if (cfg_.options.sweep_interval.count() > 0) next_sweep_ = SteadyClock::now() + cfg_.options.sweep_interval;
}

IoLoop::~IoLoop() {
  if (thread_.joinable()) {
    // Only reachable when the I/O thread drops the last reference itself.
    if (on_io_thread()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void IoLoop::start() {
  thread_ = std::thread([self = shared_from_this()] { self->run(); });
}

void IoLoop::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

void IoLoop::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  stopped_.store(true);
  wake();
  if (thread_.joinable()) {
    if (on_io_thread()) {
      thread_.detach();  // run() sees stopping_ once this completion returns
    } else {
      thread_.join();
    }
  }
}

void IoLoop::deliver(Op& op, OpResults results) noexcept {
  try {
    if (op.done) op.done(std::move(results));
  } catch (...) {  // NOLINT(bugprone-empty-catch): the store API drops exceptions of completions
  }
  op.done = nullptr;
}

void IoLoop::submit(std::unique_ptr<Op> op) {
  op->deadline = op->timeout.count() > 0 ? SteadyClock::now() + op->timeout : SteadyClock::time_point::max();
  bool need_wake = false;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      need_wake = incoming_.empty() && tasks_.empty();
      incoming_.push_back(std::move(op));
    }
  }
  if (op) {
    deliver(*op, Error(ErrorCode::kUnavailable, "postgresql: the store is closed"));
    return;
  }
  if (need_wake) wake();
}

void IoLoop::ensure_listening(std::function<void(bool)> done) {
  bool need_wake = false;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      need_wake = incoming_.empty() && tasks_.empty();
      tasks_.push_back([this, done = std::move(done)]() mutable {
        if (closed_) {
          done(false);
          return;
        }
        if (listener_ready_) {
          done(true);
          return;
        }
        listen_waiters_.push_back(std::move(done));
        if (listener_.state == ConnState::kIdle) (void)start_connect(listener_, SteadyClock::now());
      });
      done = nullptr;
    }
  }
  if (done) {
    done(false);
    return;
  }
  if (need_wake) wake();
}

LoopStats IoLoop::stats() const {
  LoopStats s;
  s.ops = ops_.load(std::memory_order_relaxed);
  s.round_trips = round_trips_.load(std::memory_order_relaxed);
  s.connects = connects_.load(std::memory_order_relaxed);
  s.broken = broken_.load(std::memory_order_relaxed);
  return s;
}

// --- Direct execution (synchronous callers) ------------------------------------

bool IoLoop::run_direct(std::unique_ptr<Op>& op) {
  if (stopped_.load() || on_io_thread()) return false;
  for (Conn& c : conns_) {
    std::unique_lock lock(c.m, std::try_to_lock);
    if (!lock.owns_lock()) continue;
    if (c.state != ConnState::kReady || !c.inflight.empty() || !c.pg) continue;
    PGconn* pg = c.pg.get();
    // An idle connection is not watched: whatever arrived meanwhile (the
    // server ending the session) is read now, before anything is sent.
    if (PQconsumeInput(pg) != 1 || PQstatus(pg) == CONNECTION_BAD) {
      ++broken_;
      c.pg.reset();
      c.state = ConnState::kIdle;
      continue;  // the I/O thread reconnects this slot when it needs it
    }
    op->deadline = op->timeout.count() > 0 ? SteadyClock::now() + op->timeout : SteadyClock::time_point::max();
    if (!send_statements(pg, *op)) {
      const Error e = connection_error(pg, op->what, cfg_.target);
      ++broken_;
      c.pg.reset();
      c.state = ConnState::kIdle;
      lock.unlock();
      ++ops_;
      deliver(*op, e);
      return true;
    }
    InFlight f;
    f.statements = op->statements.size();
    f.op = std::move(op);
    c.inflight.push_back(std::move(f));
    std::vector<InFlight> finished;
    Error error;
    for (;;) {
      const int w = PQflush(pg);
      const auto now = SteadyClock::now();
      const SteadyClock::time_point deadline = c.inflight.front().op->deadline;
      Pump result = w < 0 ? Pump::kBroken : Pump::kOk;
      if (w < 0) error = connection_error(pg, "sending a request", cfg_.target);
      if (result == Pump::kOk && deadline <= now) {
        result = Pump::kBroken;
        error = Error(ErrorCode::kTimeout, timed_out(*c.inflight.front().op, cfg_.target));
      }
      if (result == Pump::kOk) {
        pollfd p{PQsocket(pg), static_cast<short>(POLLIN | (w == 1 ? POLLOUT : 0)), 0};
        const int rc = ::poll(&p, 1, deadline == SteadyClock::time_point::max() ? -1 : poll_timeout(now, deadline));
        if (rc < 0 && errno != EINTR) {
          result = Pump::kBroken;
          error = connection_error(pg, "waiting for an answer", cfg_.target);
        } else if (rc > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
          result = pump(c, finished, error);
        }
      }
      if (!finished.empty()) {
        lock.unlock();
        if (waiting_.load() > 0) wake();  // the I/O thread may have work for this connection
        finish(finished.front());
        return true;
      }
      if (result != Pump::kOk) {
        InFlight mine = std::move(c.inflight.front());
        c.inflight.clear();
        ++broken_;
        c.pg.reset();
        c.state = ConnState::kIdle;
        lock.unlock();
        if (waiting_.load() > 0) wake();
        ++ops_;
        if (error.code() == ErrorCode::kUnavailable) {
          error = Error(ErrorCode::kUnavailable, error.message() +
                                                     "; the call may or may not have been applied before the "
                                                     "connection broke");
        }
        deliver(*mine.op, std::move(error));
        return true;
      }
    }
  }
  return false;
}

// --- The I/O thread ------------------------------------------------------------

bool IoLoop::own(Conn& c) {
  if (c.owned) return true;
  if (!c.m.try_lock()) return false;  // a direct caller is using it
  c.owned = true;
  return true;
}

void IoLoop::release_idle() {
  for (Conn& c : conns_) {
    if (c.owned && c.inflight.empty() && (c.state == ConnState::kReady || c.state == ConnState::kIdle)) {
      c.owned = false;
      c.m.unlock();
    }
  }
}

void IoLoop::take_incoming(std::unique_lock<std::mutex>& lock) {
  if (incoming_.empty() && tasks_.empty()) return;
  std::vector<std::unique_ptr<Op>> incoming = std::move(incoming_);
  std::vector<std::function<void()>> tasks = std::move(tasks_);
  incoming_.clear();
  tasks_.clear();
  lock.unlock();
  for (auto& op : incoming) pending_.push_back(std::move(op));
  for (auto& task : tasks) task();
  lock.lock();
}

void IoLoop::run() {
  thread_id_.store(std::this_thread::get_id());
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (stopping_) break;
      take_incoming(lock);
    }
    SteadyClock::time_point now = SteadyClock::now();
    waiting_.store(pending_.size());
    check_timers(now);
    dispatch(now);
    release_idle();
    waiting_.store(pending_.size());

    fds.clear();
    owners.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    owners.push_back(nullptr);
    auto next = now + std::chrono::seconds(1);
    auto watch = [&](Conn& c) {
      if (c.state == ConnState::kIdle || !c.pg) return;
      const int sock = PQsocket(c.pg.get());
      if (sock < 0) {
        if (c.state == ConnState::kConnecting || c.state == ConnState::kSetup) {
          connect_failed(c, connection_error(c.pg.get(), "connecting", cfg_.target));
        } else {
          break_conn(c, connection_error(c.pg.get(), "reading an answer", cfg_.target), false);
        }
        return;
      }
      short events = 0;
      if (c.state == ConnState::kConnecting) {
        events = c.polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        next = std::min(next, c.connect_deadline);
      } else {
        events = static_cast<short>(POLLIN | (c.want_write ? POLLOUT : 0));
        if (c.state == ConnState::kSetup) next = std::min(next, c.connect_deadline);
        for (const InFlight& f : c.inflight) {
          if (f.op) next = std::min(next, f.op->deadline);
        }
      }
      fds.push_back(pollfd{sock, events, 0});
      owners.push_back(&c);
    };
    for (Conn& c : conns_) {
      if (c.owned) watch(c);
    }
    watch(listener_);
    for (const auto& op : pending_) next = std::min(next, op->deadline);
    // Calls waiting for a connection: look again soon even if the wake-up
    // of a direct caller that freed one is missed.
    if (!pending_.empty()) next = std::min(next, now + std::chrono::milliseconds(20));
    if (cfg_.options.sweep_interval.count() > 0) next = std::min(next, next_sweep_);
    const int rc = ::poll(fds.data(), fds.size(), poll_timeout(SteadyClock::now(), next));
    if (rc < 0) continue;  // EINTR; timers are checked at the top
    if ((fds[0].revents & POLLIN) != 0) {
      std::uint64_t value = 0;
      [[maybe_unused]] const auto n = ::read(wake_fd_, &value, sizeof value);
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Conn& c = *owners[i];
      if (!c.pg || c.state == ConnState::kIdle) continue;  // closed earlier in this round
      if (PQsocket(c.pg.get()) != fds[i].fd) continue;     // reconnected in this round
      if (c.state == ConnState::kConnecting) {
        on_connect_event(c);
        continue;
      }
      if ((fds[i].revents & POLLOUT) != 0) flush(c);
      if (c.pg && (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) on_readable(c);
    }
  }
  fail_everything(Error(ErrorCode::kUnavailable, "postgresql: the store was closed before the call finished"));
  release_idle();  // the mutexes are unlocked by the thread that locked them
}

void IoLoop::check_timers(SteadyClock::time_point now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if ((*it)->deadline > now) {
      ++it;
      continue;
    }
    std::unique_ptr<Op> op = std::move(*it);
    it = pending_.erase(it);
    ++ops_;
    deliver(*op, Error(ErrorCode::kTimeout, std::string("postgresql: ") + op->what + " (" + cfg_.target +
                                                "): no connection became ready within " +
                                                std::to_string(op->timeout.count()) + " ms; retry later"));
  }
  auto check = [&](Conn& c) {
    if (c.state == ConnState::kConnecting || c.state == ConnState::kSetup) {
      if (c.connect_deadline <= now) {
        connect_failed(c,
                       Error(ErrorCode::kUnavailable, "postgresql: connecting (" + cfg_.target + ") timed out after " +
                                                          std::to_string(cfg_.options.connect_timeout.count()) +
                                                          " ms (is the server up and reachable? retry later)"));
      }
      return;
    }
    if (c.state != ConnState::kReady) return;
    for (const InFlight& f : c.inflight) {
      if (f.op && f.op->deadline <= now) {
        break_conn(c, Error(ErrorCode::kTimeout, timed_out(*f.op, cfg_.target)), true);
        return;
      }
    }
  };
  for (Conn& c : conns_) {
    if (c.owned) check(c);
  }
  check(listener_);
  if (cfg_.options.sweep_interval.count() > 0 && next_sweep_ <= now) {
    next_sweep_ = now + cfg_.options.sweep_interval;
    if (cfg_.on_sweep_tick) cfg_.on_sweep_tick();
  }
}

void IoLoop::dispatch(SteadyClock::time_point now) {
  auto opening = [&] {
    return std::any_of(conns_.begin(), conns_.end(), [](const Conn& c) {
      return c.owned && (c.state == ConnState::kConnecting || c.state == ConnState::kSetup);
    });
  };
  // Opens one more connection in an empty slot (up to pool_size).
  auto open_one = [&] {
    for (Conn& c : conns_) {
      if (!own(c) || c.state != ConnState::kIdle) continue;  // in use, or connected already
      (void)start_connect(c, now);                           // on failure, connect_failed() fails the pending calls
      return;
    }
  };
  while (!pending_.empty()) {
    Conn* best = nullptr;
    for (Conn& c : conns_) {
      if (c.owned && c.state == ConnState::kReady && (best == nullptr || c.inflight.size() < best->inflight.size())) {
        best = &c;
      }
    }
    if (best == nullptr || !best->inflight.empty()) {
      // Prefer an idle ready connection that no direct caller is using.
      for (Conn& c : conns_) {
        if (!c.owned && own(c) && c.state == ConnState::kReady && c.inflight.empty()) {
          best = &c;
          break;
        }
      }
    }
    if (best == nullptr) break;
    if (!best->inflight.empty() && !opening()) {
      // Every usable connection has work in flight: open one more, so that
      // one slow statement does not hold up the rest.
      open_one();
    }
    std::unique_ptr<Op> op = std::move(pending_.front());
    pending_.pop_front();
    send_op(*best, std::move(op));
  }
  if (!pending_.empty() && !opening()) open_one();
}

bool IoLoop::start_connect(Conn& c, SteadyClock::time_point now) {
  const ConnParams params(cfg_.options, false);
  c.pg.reset(PQconnectStartParams(params.keywords(), params.values(), 0));
  c.inflight.clear();
  c.want_write = false;
  if (!c.pg || PQstatus(c.pg.get()) == CONNECTION_BAD) {
    connect_failed(c, connection_error(c.pg.get(), "connecting", cfg_.target));
    return false;
  }
  c.state = ConnState::kConnecting;
  c.polling = PGRES_POLLING_WRITING;
  c.connect_deadline = now + cfg_.options.connect_timeout;
  return true;
}

void IoLoop::on_connect_event(Conn& c) {
  const PostgresPollingStatusType status = PQconnectPoll(c.pg.get());
  if (status == PGRES_POLLING_FAILED) {
    connect_failed(c, connection_error(c.pg.get(), "connecting", cfg_.target));
  } else if (status == PGRES_POLLING_OK) {
    begin_setup(c);
  } else {
    c.polling = status;
  }
}

void IoLoop::begin_setup(Conn& c) {
  PGconn* pg = c.pg.get();
  ++connects_;
  quiet(pg);
  if (PQsetnonblocking(pg, 1) != 0 || PQenterPipelineMode(pg) != 1) {
    connect_failed(c, connection_error(pg, "entering pipeline mode", cfg_.target));
    return;
  }
  InFlight setup;
  bool sent = true;
  if (c.listener) {
    sent = PQsendQueryParams(pg, cfg_.listen_sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
    setup.statements = 1;
  } else {
    // Prepared once per connection: a claim then costs one Bind/Execute.
    for (std::size_t i = 0; i < postgres_sql::kStatements.size() && sent; ++i) {
      const postgres_sql::StatementDef& def = postgres_sql::kStatements[i];
      sent = PQsendPrepare(pg, def.name.data(), cfg_.statement_texts[i].c_str(), def.params, def.types.data()) == 1;
      ++setup.statements;
    }
  }
  if (!sent || PQpipelineSync(pg) != 1) {
    connect_failed(c, connection_error(pg, "preparing statements", cfg_.target));
    return;
  }
  c.inflight.push_back(std::move(setup));
  c.state = ConnState::kSetup;
  flush(c);
}

bool IoLoop::send_statements(PGconn* pg, const Op& op) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  for (const Statement& st : op.statements) {
    const postgres_sql::StatementDef& def = postgres_sql::statement(st.id);
    values.clear();
    lengths.clear();
    formats.clear();
    for (const auto& p : st.params) {
      values.push_back(p ? p->data() : nullptr);
      lengths.push_back(p ? static_cast<int>(p->size()) : 0);
      formats.push_back(1);
    }
    if (PQsendQueryPrepared(pg, def.name.data(), static_cast<int>(values.size()), values.data(), lengths.data(),
                            formats.data(), 1) != 1) {
      return false;
    }
    if (st.sync_after && &st != &op.statements.back() && PQpipelineSync(pg) != 1) return false;
  }
  return PQpipelineSync(pg) == 1;
}

bool IoLoop::send_op(Conn& c, std::unique_ptr<Op> op) {
  if (!send_statements(c.pg.get(), *op)) {
    const Error e = connection_error(c.pg.get(), op->what, cfg_.target);
    ++ops_;
    deliver(*op, e);
    break_conn(c, e, false);
    return false;
  }
  InFlight f;
  f.statements = op->statements.size();
  f.op = std::move(op);
  c.inflight.push_back(std::move(f));
  flush(c);
  return true;
}

void IoLoop::flush(Conn& c) {
  const int r = PQflush(c.pg.get());
  if (r < 0) {
    if (c.state == ConnState::kSetup) {
      connect_failed(c, connection_error(c.pg.get(), "sending", cfg_.target));
    } else {
      break_conn(c, connection_error(c.pg.get(), "sending a request", cfg_.target), false);
    }
    return;
  }
  c.want_write = r == 1;
}

IoLoop::Pump IoLoop::pump(Conn& c, std::vector<InFlight>& finished, Error& error) {
  PGconn* pg = c.pg.get();
  if (PQconsumeInput(pg) != 1) {
    error = connection_error(pg, "reading an answer", cfg_.target);
    return c.state == ConnState::kSetup ? Pump::kSetupFailed : Pump::kBroken;
  }
  while (PGnotify* n = PQnotifies(pg)) {
    if (c.listener && cfg_.on_notify) cfg_.on_notify(n->extra == nullptr ? "" : n->extra);
    PQfreemem(n);
  }
  while (!c.inflight.empty() && PQisBusy(pg) == 0) {
    InFlight& f = c.inflight.front();
    PGresult* raw = PQgetResult(pg);
    if (f.next < f.statements) {
      if (raw == nullptr) {
        if (!f.got && !f.error) {
          f.error = connection_error(pg, f.op ? f.op->what : "preparing statements", cfg_.target);
        }
        ++f.next;
        f.got = false;
        continue;
      }
      ResultPtr result(raw);
      // The Sync after a statement that ends a transaction of its own (a
      // claim_many chunk): the next statement starts afresh.
      if (!f.got && PQresultStatus(raw) == PGRES_PIPELINE_SYNC) continue;
      if (f.got) continue;  // a statement has one result; ignore anything more
      f.got = true;
      switch (PQresultStatus(raw)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK: f.results.push_back(std::move(result)); break;
        case PGRES_PIPELINE_ABORTED:
          // Skipped because an earlier statement of the Op failed; that
          // statement's error is the one reported.
          if (!f.error) f.error = Error(ErrorCode::kInternal, "postgresql: statement skipped after an error");
          break;
        default:
          if (!f.error) f.error = result_error(raw, pg, f.op ? f.op->what : "preparing statements", cfg_.target);
          break;
      }
      continue;
    }
    if (raw == nullptr) break;  // the Sync's answer has not arrived yet
    ResultPtr result(raw);
    if (PQresultStatus(raw) != PGRES_PIPELINE_SYNC) {
      // An error outside any statement (e.g. the server terminating the
      // session): remember it; the Sync or the broken connection follows.
      if (!f.error) f.error = result_error(raw, pg, f.op ? f.op->what : "connecting", cfg_.target);
      continue;
    }
    InFlight done = std::move(f);
    c.inflight.pop_front();
    ++round_trips_;
    if (!done.op) {
      if (done.error) {
        error = std::move(*done.error);
        return Pump::kSetupFailed;
      }
      c.state = ConnState::kReady;
      if (c.listener) set_listening(true);
      continue;
    }
    finished.push_back(std::move(done));
  }
  if (PQstatus(pg) == CONNECTION_BAD) {
    error = connection_error(pg, "reading an answer", cfg_.target);
    return c.state == ConnState::kSetup ? Pump::kSetupFailed : Pump::kBroken;
  }
  return Pump::kOk;
}

void IoLoop::on_readable(Conn& c) {
  std::vector<InFlight> finished;
  Error error;
  const Pump result = pump(c, finished, error);
  for (InFlight& f : finished) finish(f);
  if (result == Pump::kSetupFailed) {
    connect_failed(c, error);
  } else if (result == Pump::kBroken) {
    break_conn(c, error, false);
  }
}

void IoLoop::finish(InFlight& f) {
  ++ops_;
  f.op->answered = true;  // the Op's Sync came back
  if (f.error) {
    deliver(*f.op, std::move(*f.error));
  } else {
    deliver(*f.op, std::move(f.results));
  }
}

void IoLoop::break_conn(Conn& c, const Error& why, bool timed_out) {
  ++broken_;
  std::deque<InFlight> inflight = std::move(c.inflight);
  c.inflight.clear();
  c.pg.reset();
  c.state = ConnState::kIdle;
  c.want_write = false;
  for (InFlight& f : inflight) {
    if (!f.op) continue;
    ++ops_;
    if (timed_out || why.code() != ErrorCode::kUnavailable) {
      deliver(*f.op, why);
    } else {
      deliver(*f.op, Error(ErrorCode::kUnavailable,
                           why.message() + "; the call may or may not have been applied before the connection broke"));
    }
  }
  if (c.listener) set_listening(false);
}

void IoLoop::connect_failed(Conn& c, const Error& why) {
  ++broken_;
  c.pg.reset();
  c.state = ConnState::kIdle;
  c.want_write = false;
  c.inflight.clear();  // only the setup can be in flight before kReady
  if (c.listener) {
    set_listening(false);
    return;
  }
  // Another connection that is up, or on its way up, will serve the queue;
  // one a direct caller holds is up (only ready ones are lent).
  bool other = false;
  for (Conn& o : conns_) {
    if (&o != &c && (!own(o) || o.state != ConnState::kIdle)) {
      other = true;
      break;
    }
  }
  if (!other) fail_pending(why);
}

void IoLoop::fail_pending(const Error& why) {
  std::deque<std::unique_ptr<Op>> pending = std::move(pending_);
  pending_.clear();
  for (auto& op : pending) {
    ++ops_;
    deliver(*op, why);
  }
}

void IoLoop::fail_everything(const Error& why) {
  std::vector<std::unique_ptr<Op>> incoming;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mutex_);
    incoming = std::move(incoming_);
    incoming_.clear();
    tasks = std::move(tasks_);
    tasks_.clear();
  }
  for (auto& op : incoming) pending_.push_back(std::move(op));
  fail_pending(why);
  for (Conn& c : conns_) {
    // A direct caller finishes its own call; its connection closes with the loop.
    if (own(c) && c.state != ConnState::kIdle) break_conn(c, why, false);
  }
  if (listener_.state != ConnState::kIdle) break_conn(listener_, why, false);
  // Listen requests that never ran: answer them (not listening).
  closed_ = true;
  for (auto& task : tasks) task();
  set_listening(false);
}

void IoLoop::set_listening(bool ready) {
  listener_ready_ = ready;
  auto waiters = std::move(listen_waiters_);
  listen_waiters_.clear();
  for (auto& w : waiters) w(ready);
}

}  // namespace idem::pg
