// The I/O thread; see event_loop.h.
#include "stores/redis/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace idem::redis_detail {
namespace {

// Tasks must not throw into the loop; a throwing task is dropped.
void run_task(std::function<void()>& task) noexcept {
  try {
    task();
  } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere to report it
  }
}

}  // namespace

EventLoop::EventLoop() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0) {
    throw std::runtime_error(std::string("redis: cannot create the I/O loop: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the eventfd
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
  thread_ = std::thread([this] {
    thread_id_.store(std::this_thread::get_id(), std::memory_order_release);
    run();
  });
}

EventLoop::~EventLoop() {
  stopping_.store(true);
  wake();
  if (thread_.joinable()) thread_.join();
  // Nothing runs on the loop any more: drain on this thread.
  for (;;) {
    std::vector<std::function<void()>> posted;
    std::vector<Timer> timers;
    {
      std::lock_guard lock(mutex_);
      posted.swap(posted_);
      timers.swap(timers_);
    }
    if (posted.empty() && timers.empty()) break;
    for (auto& task : posted) run_task(task);
    for (auto& timer : timers) run_task(timer.task);
  }
  ::close(event_fd_);
  ::close(epoll_fd_);
}

void EventLoop::watch(int fd, Handler* handler) {
  epoll_event ev{};
  ev.events = EPOLLONESHOT;  // disarmed: nothing is reported until arm()
  ev.data.ptr = handler;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

void EventLoop::arm(int fd, Handler* handler, bool want_write) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT | (want_write ? EPOLLOUT : 0U);
  ev.data.ptr = handler;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::unwatch(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::attach(Handler* handler) {
  std::lock_guard lock(mutex_);
  attached_.push_back(handler);
}

void EventLoop::service(Handler* handler) {
  if (handler->service_queued_.exchange(true, std::memory_order_acq_rel)) return;
  {
    std::lock_guard lock(mutex_);
    services_.push_back(handler);
  }
  // Inside a pass the loop looks at services_ again before it sleeps.
  if (!in_loop_thread()) wake();
}

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(task));
  }
  if (!in_loop_thread()) wake();
}

void EventLoop::post_at(Deadline when, std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    timers_.push_back(Timer{when, timer_seq_++, std::move(task)});
    std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  }
  if (!in_loop_thread()) wake();
}

void EventLoop::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof one);
}

Deadline EventLoop::run_timers(Deadline now) {
  for (;;) {
    std::function<void()> task;
    {
      std::lock_guard lock(mutex_);
      if (timers_.empty()) return Deadline::max();
      if (timers_.front().when > now) return timers_.front().when;
      std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
      task = std::move(timers_.back().task);
      timers_.pop_back();
    }
    run_task(task);
  }
}

void EventLoop::run() {
  std::array<epoll_event, 256> events{};
  std::vector<std::function<void()>> posted;
  std::vector<Handler*> services;
  std::vector<Handler*> attached;
  Deadline next = Deadline::max();
  while (!stopping_.load(std::memory_order_acquire)) {
    int timeout_ms = -1;
    if (next != Deadline::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
    }
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    WakeBatch::Scope scope(batch_);
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<Handler*>(events[static_cast<std::size_t>(i)].data.ptr);
      if (handler == nullptr) {
        std::uint64_t count = 0;
        [[maybe_unused]] const ssize_t r = ::read(event_fd_, &count, sizeof count);
        wake_pending_.store(false, std::memory_order_release);
        continue;
      }
      handler->on_ready(events[static_cast<std::size_t>(i)].events);
    }
    // Timers, posted tasks, services and deadline checks may each produce
    // more of the others (a timed-out request's retry, a completion's next
    // request): repeat until quiet, so that everything this pass produced is
    // written, and every deadline counted, before sleeping.
    for (;;) {
      Deadline now = Clock::now();
      run_timers(now);
      for (;;) {
        {
          std::lock_guard lock(mutex_);
          posted.swap(posted_);
          services.swap(services_);
        }
        if (posted.empty() && services.empty()) break;
        for (auto& task : posted) run_task(task);
        posted.clear();
        for (Handler* h : services) {
          h->service_queued_.store(false, std::memory_order_release);
          h->on_service();
        }
        services.clear();
      }
      {
        std::lock_guard lock(mutex_);
        attached = attached_;
      }
      now = Clock::now();
      Deadline ticks = Deadline::max();
      for (Handler* h : attached) ticks = std::min(ticks, h->on_tick(now));
      std::lock_guard lock(mutex_);
      next = std::min(ticks, timers_.empty() ? Deadline::max() : timers_.front().when);
      if (posted_.empty() && services_.empty() && next > now) break;
    }
    batch_.flush();
  }
  batch_.flush();
}

}  // namespace idem::redis_detail
