// File: src/stores/redis/connection.h
//
// Connection is one pipelined connection to one Redis server, shared by every
// thread of the store. It never runs lock-step: requests are written as they
// arrive, while earlier replies are still outstanding, and replies are matched
// to requests in order (Redis answers in order).
//
// Who does the I/O (the "owner") changes hands under the connection's mutex:
//
//  * the event loop, normally: it writes what was queued at the end of each
//    pass, reads everything the socket holds when it is readable, and
//    completes every request whose replies arrived, in one pass;
//  * a synchronous caller, when it finds the connection idle: it writes its
//    request and reads the reply itself (no thread hand-off when it is
//    alone). Requests queued meanwhile by others are written along, and
//    once its reply is in, the connection goes back to idle or to the loop.
//
// A connection that fails (reset, timeout, bad bytes) is closed, never
// reused, so replies cannot get out of step; every request still on it fails
// with whether it may have reached the server (which decides whether it may be
// retried). The next request reconnects, on a background thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "idem/core/error.h"
#include "stores/redis/background.h"
#include "stores/redis/event_loop.h"
#include "stores/redis/resp.h"
#include "stores/redis/socket.h"

namespace idem::redis_detail {

// IoError says what failed and whether the request may have reached the
// server.
struct IoError {
  Error error;
  bool maybe_executed = false;
};

// Request is `expected` commands written together, answered by as many
// replies. The operation that owns it keeps it alive until complete().
class Request {
 public:
  virtual ~Request() = default;

  // complete() is called once: with the replies in order (error == nullptr),
  // or with the error that failed the connection (no replies). It runs on
  // the loop thread, or, for a synchronous call's own request, possibly on
  // the caller thread. The replies may be moved out.
  virtual void complete(std::span<ReplyPtr> replies, const IoError* error) = 0;

  std::uint32_t expected = 1;
  // sync: the request belongs to a synchronous call, whose caller may drive
  // the connection itself and may complete it on its own thread.
  bool sync = false;

 private:
  friend class Connection;
  // The replies so far: the first few inline (most requests have one or
  // two), the rest in `more_`.
  void reset_replies() {
    received_ = 0;
    more_.clear();
  }
  void add_reply(ReplyPtr reply) {
    if (received_ < inline_.size()) {
      inline_[received_] = std::move(reply);
    } else {
      if (more_.empty()) {
        more_.reserve(expected);
        for (ReplyPtr& r : inline_) more_.push_back(std::move(r));
      }
      more_.push_back(std::move(reply));
    }
    ++received_;
  }
  std::span<ReplyPtr> replies() {
    return more_.empty() ? std::span<ReplyPtr>(inline_.data(), received_) : std::span<ReplyPtr>(more_);
  }
  std::array<ReplyPtr, 3> inline_;
  std::vector<ReplyPtr> more_;
  std::uint32_t received_ = 0;
  std::uint64_t begin_ = 0;  // stream offset of its first byte
  Deadline deadline_{};
  Request* next_ = nullptr;
};

struct ConnectionCounters {
  std::atomic<std::uint64_t> round_trips{0};  // batches of requests written
  std::atomic<std::uint64_t> commands{0};     // commands written
  std::atomic<std::uint64_t> connects{0};     // connections established
};

class Connection final : public EventLoop::Handler, public DirectDriver {
 public:
  // Opener connects and runs the handshake; it runs on a background thread
  // and may block (bounded by the connect and command timeouts).
  using Opener = std::function<Result<std::unique_ptr<Socket>>()>;
  // on_broken is told of every transport failure (a Cluster client refreshes
  // its slot map on it); called without the connection's lock.
  using BrokenHook = std::function<void(const Error&)>;
  // Formatter appends a request's commands to the output buffer.
  using Formatter = void (*)(void* context, std::string& out);

  Connection(EventLoop& loop, Background& background, Opener opener, std::chrono::milliseconds command_timeout,
             ConnectionCounters& counters, BrokenHook on_broken = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // submit() queues `request`; `format(context, out)` appends its commands.
  // Any thread. The request completes through Request::complete().
  void submit(Request& request, Formatter format, void* context);

  // reset() closes the connection (after a failover: the server it talks to
  // is no longer the master); requests on it fail with kUnavailable. Any
  // thread.
  void reset(std::string why);

  // shutdown() fails everything and refuses new requests (store closing).
  // Loop thread.
  void shutdown();

  // idle() is true when nothing is queued or in flight (a hint).
  bool idle() const;

  // EventLoop::Handler
  void on_ready(std::uint32_t events) override;
  void on_service() override;
  Deadline on_tick(Deadline now) override;
  // DirectDriver
  void drive(void* request) override;

 private:
  enum class State : std::uint8_t { kDisconnected, kConnecting, kReady, kClosed };
  enum class Owner : std::uint8_t { kNone, kLoop, kDirect };

  void start_connect();
  void finish_connect(Result<std::unique_ptr<Socket>> socket);
  // The owner's I/O (the loop, or a caller in drive()).
  void take_queued();
  bool write_nonblocking(IoFailure& failure);
  bool read_nonblocking(IoFailure& failure);
  // parse_replies() moves complete replies into their requests; requests
  // whose replies are all in go to `done`. With `stop_after`, parsing stops
  // once that request is complete (the rest stays buffered).
  bool parse_replies(std::vector<Request*>& done, const Request* stop_after, IoFailure& failure);
  void loop_io(bool read);
  // arm_if_owned() asks the loop for the socket's next event while the loop
  // still owns the connection (owner: loop thread).
  void arm_if_owned();
  void fail_connection(const IoFailure& failure, const Request* inline_request);
  // release_if_idle() gives the connection up when nothing is left to do;
  // true when it did.
  bool release_if_idle();
  void complete_all(std::vector<Request*>& done);

  EventLoop& loop_;
  Background& background_;
  Opener opener_;
  std::chrono::milliseconds command_timeout_;
  ConnectionCounters& counters_;
  BrokenHook on_broken_;

  // idle_hint_: state_ == kReady && owner_ == kNone, readable without the
  // lock (Node::pick() prefers idle connections).
  std::atomic<bool> idle_hint_{false};
  void update_hint_locked() {
    idle_hint_.store(state_ == State::kReady && owner_ == Owner::kNone, std::memory_order_relaxed);
  }

  mutable std::mutex mutex_;  // guards the fields up to the owner-only ones
  State state_ = State::kDisconnected;
  Owner owner_ = Owner::kNone;
  std::string out_;                 // formatted requests not yet taken by the owner
  Request* queued_head_ = nullptr;  // their requests, in order
  Request* queued_tail_ = nullptr;
  std::uint64_t appended_ = 0;  // stream bytes appended so far
  bool read_needed_ = false;    // handed over by a caller: buffered replies wait
  std::string reset_reason_;    // non-empty: close at the next chance
  bool armed_ = false;          // a one-shot epoll notification is pending
  bool armed_write_ = false;    // ... and it includes writability
  std::unique_ptr<Socket> socket_;
  std::unique_ptr<ReplyReader> reader_;

  // Owner-only (the owner is set under mutex_, which orders the hand-over).
  std::deque<Request*> inflight_;
  std::string wbuf_;
  std::size_t wpos_ = 0;
  std::uint64_t written_ = 0;  // stream bytes the socket took
  Deadline last_io_{};         // the last read: an idle connection is checked before use
};

}  // namespace idem::redis_detail
