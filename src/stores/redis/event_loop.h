// File: src/stores/redis/event_loop.h
//
// EventLoop is the store's I/O thread: epoll over the connections' sockets,
// an eventfd to be woken from other threads, timers, and posted tasks.
//
// One pass of the loop: handle every ready socket (each reads what is there
// and completes every reply it holds), run due timers and posted tasks, let
// every connection that was handed new requests write them (so the requests
// issued by completion callbacks of this pass go out in one write), check
// deadlines, then wake the synchronous callers completed in the pass
// together (see sync_wait.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "stores/redis/socket.h"
#include "stores/redis/sync_wait.h"

namespace idem::redis_detail {

class EventLoop {
 public:
  // Handler is what the loop drives: a connection.
  class Handler {
   public:
    // on_ready() is called with the epoll events of the handler's socket.
    virtual void on_ready(std::uint32_t events) = 0;
    // on_service() is called once per pass after service() asked for it.
    virtual void on_service() = 0;
    // on_tick() checks the handler's deadlines; returns its next one
    // (Deadline::max() when it has none).
    virtual Deadline on_tick(Deadline now) = 0;
    virtual ~Handler() = default;

   private:
    friend class EventLoop;
    std::atomic<bool> service_queued_{false};
  };

  EventLoop();
  // ~EventLoop() stops and joins the thread, then runs what is still posted
  // or scheduled on the destroying thread, so that every operation still
  // waiting for a retry gets its callback (the store fails them at shutdown).
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  bool in_loop_thread() const noexcept {
    return std::this_thread::get_id() == thread_id_.load(std::memory_order_acquire);
  }

  // watch() registers `fd`, disarmed; arm() asks for one notification
  // (one-shot: readable, or writable too when `want_write`, or closed), after
  // which the fd is disarmed again until the next arm(). A connection is
  // armed only while the loop does its I/O: a caller driving it itself, or an
  // idle connection, costs the loop no wake-up. unwatch() removes it. Any
  // thread.
  void watch(int fd, Handler* handler);
  void arm(int fd, Handler* handler, bool want_write);
  void unwatch(int fd);

  // attach() adds `handler` to the deadline checks. Handlers must outlive
  // the loop (the store destroys its loop first).
  void attach(Handler* handler);

  // service() asks for handler->on_service() in the next pass; coalesced.
  void service(Handler* handler);

  // post() runs `task` on the loop thread soon; post_at() at `when`.
  void post(std::function<void()> task);
  void post_at(Deadline when, std::function<void()> task);

 private:
  struct Timer {
    Deadline when;
    std::uint64_t seq;
    std::function<void()> task;
    bool operator>(const Timer& other) const { return std::tie(when, seq) > std::tie(other.when, other.seq); }
  };

  void run();
  void wake();
  Deadline run_timers(Deadline now);

  int epoll_fd_ = -1;
  int event_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> wake_pending_{false};

  std::mutex mutex_;  // guards everything below
  std::vector<Handler*> services_;
  std::vector<std::function<void()>> posted_;
  std::vector<Timer> timers_;  // a min-heap
  std::uint64_t timer_seq_ = 0;
  std::vector<Handler*> attached_;

  WakeBatch batch_;  // loop thread only
  std::atomic<std::thread::id> thread_id_{};
  std::thread thread_;
};

}  // namespace idem::redis_detail
