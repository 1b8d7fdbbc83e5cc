// The pipelined connection; see connection.h.
#include "stores/redis/connection.h"

#include <sys/epoll.h>

#include <array>
#include <string_view>
#include <utility>

#include "stores/redis/sync_wait.h"

namespace idem::redis_detail {

Connection::Connection(EventLoop& loop, Background& background, Opener opener,
                       std::chrono::milliseconds command_timeout, ConnectionCounters& counters, BrokenHook on_broken)
    : loop_(loop),
      background_(background),
      opener_(std::move(opener)),
      command_timeout_(command_timeout),
      counters_(counters),
      on_broken_(std::move(on_broken)) {
  loop_.attach(this);
}

Connection::~Connection() = default;

bool Connection::idle() const { return idle_hint_.load(std::memory_order_relaxed); }

void Connection::submit(Request& request, Formatter format, void* context) {
  request.reset_replies();
  request.next_ = nullptr;
  bool connect = false;
  bool service = false;
  bool closed = false;
  SyncWaiter* driver = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kClosed) {
      request.begin_ = appended_;
      const std::size_t before = out_.size();
      format(context, out_);
      appended_ += out_.size() - before;
      if (queued_tail_ == nullptr) {
        queued_head_ = &request;
      } else {
        queued_tail_->next_ = &request;
      }
      queued_tail_ = &request;
      switch (state_) {
        case State::kDisconnected:
          state_ = State::kConnecting;
          update_hint_locked();
          connect = true;
          break;
        case State::kConnecting: break;
        case State::kReady:
          if (owner_ == Owner::kNone) {
            // Idle: a synchronous caller does its own I/O, anything else
            // goes through the loop.
            SyncWaiter* waiter = request.sync ? SyncWaiter::current() : nullptr;
            if (waiter != nullptr && !waiter->has_grant() && !loop_.in_loop_thread()) {
              owner_ = Owner::kDirect;
              update_hint_locked();
              driver = waiter;
            } else {
              owner_ = Owner::kLoop;
              update_hint_locked();
              service = true;
            }
          } else if (owner_ == Owner::kLoop) {
            service = true;
          }
          break;
        case State::kClosed: break;
      }
    } else {
      closed = true;
    }
  }
  if (closed) {
    IoError io{Error(ErrorCode::kUnavailable, "redis: the store is closed"), false};
    request.complete({}, &io);
    return;
  }
  if (driver != nullptr) driver->grant(this, &request);
  if (service) loop_.service(this);
  if (connect) start_connect();
}

void Connection::start_connect() {
  const bool started = background_.run([this] { finish_connect(opener_()); });
  if (!started) finish_connect(Error(ErrorCode::kUnavailable, "redis: the store is closed"));
}

void Connection::finish_connect(Result<std::unique_ptr<Socket>> socket) {
  std::vector<Request*> failed;
  bool service = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kClosed) return;  // shutdown() failed the queue already
    if (!socket) {
      for (Request* r = queued_head_; r != nullptr; r = r->next_) failed.push_back(r);
      queued_head_ = queued_tail_ = nullptr;
      out_.clear();
      written_ = appended_;
      state_ = State::kDisconnected;
      update_hint_locked();
    } else {
      socket_ = std::move(*socket);
      reader_ = std::make_unique<ReplyReader>();
      armed_ = false;
      last_io_ = Clock::now();
      wbuf_.clear();
      wpos_ = 0;
      written_ = appended_ - out_.size();
      state_ = State::kReady;
      update_hint_locked();
      loop_.watch(socket_->fd(), this);
      counters_.connects.fetch_add(1, std::memory_order_relaxed);
      if (queued_head_ != nullptr) {
        owner_ = Owner::kLoop;
        update_hint_locked();
        service = true;
      } else {
        owner_ = Owner::kNone;
        update_hint_locked();
      }
    }
  }
  if (service) loop_.service(this);
  if (!socket) {
    // Nothing was sent: every request may be retried.
    Error error = socket.error();
    if (on_broken_) on_broken_(error);
    loop_.post([failed = std::move(failed), error = std::move(error)] {
      IoError io{error, false};
      for (Request* r : failed) r->complete({}, &io);
    });
  }
}

void Connection::take_queued() {
  std::uint64_t requests = 0;
  std::uint64_t commands = 0;
  {
    std::lock_guard lock(mutex_);
    if (queued_head_ == nullptr) return;
    const Deadline deadline = Clock::now() + command_timeout_;
    for (Request* r = queued_head_; r != nullptr; r = r->next_) {
      r->deadline_ = deadline;
      inflight_.push_back(r);
      ++requests;
      commands += r->expected;
    }
    queued_head_ = queued_tail_ = nullptr;
    if (wpos_ == wbuf_.size()) {
      wbuf_.swap(out_);
      wpos_ = 0;
    } else {
      wbuf_.append(out_);
    }
    out_.clear();
  }
  if (requests > 0) {
    counters_.round_trips.fetch_add(1, std::memory_order_relaxed);
    counters_.commands.fetch_add(commands, std::memory_order_relaxed);
  }
}

bool Connection::write_nonblocking(IoFailure& failure) {
  if (wpos_ < wbuf_.size()) {
    std::size_t consumed = 0;
    const bool ok = socket_->send(std::string_view(wbuf_).substr(wpos_), consumed, failure);
    wpos_ += consumed;
    written_ += consumed;
    if (wpos_ == wbuf_.size()) {
      wbuf_.clear();
      wpos_ = 0;
    }
    return ok;
  }
  return socket_->flush(failure);
}

bool Connection::read_nonblocking(IoFailure& failure) {
  std::array<char, 64 * 1024> buf;  // NOLINT(cppcoreguidelines-pro-type-member-init): filled by recv
  for (;;) {
    std::size_t n = 0;
    if (!socket_->recv(buf.data(), buf.size(), n, failure)) return false;
    if (n == 0) return true;
    if (!reader_->feed(buf.data(), n)) {
      failure = {Failure::kProtocol, "out of memory reading replies from " + socket_->peer()};
      return false;
    }
  }
}

bool Connection::parse_replies(std::vector<Request*>& done, const Request* stop_after, IoFailure& failure) {
  for (;;) {
    ReplyPtr reply;
    if (!reader_->next(reply)) {
      failure = {Failure::kProtocol, "malformed reply from " + socket_->peer() + ": " + reader_->error()};
      return false;
    }
    if (!reply) return true;
    if (inflight_.empty()) {
      failure = {Failure::kProtocol, "unexpected reply from " + socket_->peer() + " with no request outstanding"};
      return false;
    }
    Request* r = inflight_.front();
    r->add_reply(std::move(reply));
    if (r->received_ == r->expected) {
      inflight_.pop_front();
      done.push_back(r);
      if (r == stop_after) return true;
    }
  }
}

void Connection::complete_all(std::vector<Request*>& done) {
  for (Request* r : done) r->complete(r->replies(), nullptr);
  done.clear();
}

bool Connection::release_if_idle() {
  if (!inflight_.empty() || wpos_ < wbuf_.size() || socket_->has_pending()) return false;
  std::lock_guard lock(mutex_);
  if (queued_head_ != nullptr || !out_.empty() || !reset_reason_.empty()) return false;
  owner_ = Owner::kNone;
  update_hint_locked();
  return true;
}

void Connection::arm_if_owned() {
  const bool want_write = wpos_ < wbuf_.size() || socket_->has_pending();
  std::lock_guard lock(mutex_);
  if (armed_ && armed_write_ == want_write) return;
  armed_ = true;
  armed_write_ = want_write;
  loop_.arm(socket_->fd(), this, want_write);
}

void Connection::loop_io(bool read) {
  IoFailure failure;
  std::vector<Request*> done;
  bool ok = true;
  if (read) ok = read_nonblocking(failure);
  // Replies that arrived before a failure are still good.
  IoFailure parse_failure;
  if (!parse_replies(done, nullptr, parse_failure)) {
    if (ok) failure = parse_failure;
    ok = false;
  }
  if (ok) {
    take_queued();
    ok = write_nonblocking(failure);
  }
  if (read) last_io_ = Clock::now();
  complete_all(done);
  if (!ok) {
    fail_connection(failure, nullptr);
    return;
  }
  if (!release_if_idle()) arm_if_owned();
}

void Connection::on_ready(std::uint32_t events) {
  {
    std::lock_guard lock(mutex_);
    armed_ = false;  // one-shot: this was it
    if (state_ != State::kReady || owner_ == Owner::kDirect) return;
    // Readable while idle: the server closed it, or sent something unasked.
    if (owner_ == Owner::kNone) owner_ = Owner::kLoop;
    update_hint_locked();
  }
  loop_io((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
}

void Connection::on_service() {
  bool read = false;
  std::string reset;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kReady || owner_ == Owner::kDirect) return;
    owner_ = Owner::kLoop;
    update_hint_locked();
    read = std::exchange(read_needed_, false);
    reset = reset_reason_;
  }
  if (!reset.empty()) {
    fail_connection({Failure::kReset, reset}, nullptr);
    return;
  }
  loop_io(read);
}

Deadline Connection::on_tick(Deadline now) {
  Deadline next = Deadline::max();
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kReady || owner_ != Owner::kLoop || inflight_.empty()) return next;
    next = inflight_.front()->deadline_;
  }
  if (next > now) return next;
  fail_connection({Failure::kTimeout, "no answer from " + socket_->peer() + " within the command timeout"}, nullptr);
  return Deadline::max();
}

void Connection::drive(void* request) {
  auto* mine = static_cast<Request*>(request);
  IoFailure failure;
  std::vector<Request*> done;
  std::array<char, 16 * 1024> buf;  // NOLINT(cppcoreguidelines-pro-type-member-init): filled by read_some
  bool ok = true;
  take_queued();
  // A connection idle for a while may have been closed by the server (a
  // restart, a client timeout): find out before sending, while a failure
  // still means "not executed" and the request may be retried.
  if (Clock::now() - last_io_ > std::chrono::seconds(1) && socket_->peer_closed()) {
    fail_connection({Failure::kReset, socket_->peer() + " closed the idle connection"}, mine);
    return;
  }
  for (;;) {
    if (wpos_ < wbuf_.size() || socket_->has_pending()) {
      if (!socket_->write_all(std::string_view(wbuf_).substr(wpos_), mine->deadline_, failure)) {
        ok = false;
        break;
      }
      written_ += wbuf_.size() - wpos_;
      wbuf_.clear();
      wpos_ = 0;
    }
    if (!parse_replies(done, mine, failure)) {
      ok = false;
      break;
    }
    if (!done.empty()) break;  // ours: it was first in line
    const std::size_t n = socket_->read_some(buf.data(), buf.size(), mine->deadline_, failure, /*expect_wait=*/true);
    if (n == 0) {
      if (failure.failure == Failure::kTimeout) {
        failure.detail = "no answer from " + socket_->peer() + " within the command timeout";
      }
      ok = false;
      break;
    }
    last_io_ = Clock::now();
    if (!reader_->feed(buf.data(), n)) {
      failure = {Failure::kProtocol, "out of memory reading replies from " + socket_->peer()};
      ok = false;
      break;
    }
    take_queued();  // write along whatever others queued meanwhile
  }
  if (!ok) {
    fail_connection(failure, mine);
    return;
  }
  bool service = false;
  std::string reset;
  {
    std::lock_guard lock(mutex_);
    if (!reset_reason_.empty()) {
      reset = reset_reason_;
    } else if (inflight_.empty() && queued_head_ == nullptr && out_.empty() && wpos_ == wbuf_.size() &&
               !socket_->has_pending()) {
      owner_ = Owner::kNone;
      update_hint_locked();
    } else {
      owner_ = Owner::kLoop;
      update_hint_locked();
      read_needed_ = true;  // replies behind ours may sit in the reader already
      service = true;
    }
  }
  if (!reset.empty()) {
    complete_all(done);
    fail_connection({Failure::kReset, reset}, nullptr);
    return;
  }
  if (service) loop_.service(this);
  complete_all(done);
}

void Connection::fail_connection(const IoFailure& failure, const Request* inline_request) {
  const Error error = map_error(failure.failure, failure.detail);
  std::vector<std::pair<Request*, bool>> failed;
  std::unique_ptr<Socket> old_socket;
  {
    std::lock_guard lock(mutex_);
    for (Request* r : inflight_) failed.emplace_back(r, r->begin_ < written_);
    inflight_.clear();
    for (Request* r = queued_head_; r != nullptr; r = r->next_) failed.emplace_back(r, r->begin_ < written_);
    queued_head_ = queued_tail_ = nullptr;
    out_.clear();
    wbuf_.clear();
    wpos_ = 0;
    written_ = appended_;
    if (socket_) loop_.unwatch(socket_->fd());
    old_socket = std::move(socket_);
    armed_ = false;
    reader_.reset();
    if (state_ != State::kClosed) state_ = State::kDisconnected;
    update_hint_locked();
    owner_ = Owner::kNone;
    update_hint_locked();
    read_needed_ = false;
    reset_reason_.clear();
  }
  old_socket.reset();
  if (on_broken_ && !failed.empty()) on_broken_(error);
  std::vector<std::pair<Request*, bool>> later;
  for (auto& [r, maybe] : failed) {
    if (r == inline_request || loop_.in_loop_thread()) {
      IoError io{error, maybe};
      r->complete({}, &io);
    } else {
      later.emplace_back(r, maybe);
    }
  }
  if (!later.empty()) {
    loop_.post([later = std::move(later), error] {
      for (auto& [r, maybe] : later) {
        IoError io{error, maybe};
        r->complete({}, &io);
      }
    });
  }
}

void Connection::reset(std::string why) {
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kReady) return;
    reset_reason_ = std::move(why);
    if (owner_ == Owner::kDirect) return;  // the caller driving it closes it
    owner_ = Owner::kLoop;
    update_hint_locked();
  }
  loop_.service(this);
}

void Connection::shutdown() {
  bool had_owner = false;
  {
    std::lock_guard lock(mutex_);
    state_ = State::kClosed;
    update_hint_locked();
    had_owner = owner_ == Owner::kDirect;
  }
  if (had_owner) return;  // a synchronous call during destruction: the caller's bug
  fail_connection({Failure::kReset, "the store is closed"}, nullptr);
}

}  // namespace idem::redis_detail
