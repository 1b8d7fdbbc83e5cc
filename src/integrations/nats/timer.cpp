#include "integrations/nats/timer.h"

#include <vector>

namespace idem::nats::detail {

Timer::Timer() : thread_([this] { run(); }) {}

Timer::~Timer() { stop(); }

void Timer::schedule(Clock::time_point at, Repeating task) {
  bool earliest = false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    earliest = tasks_.empty() || at < tasks_.begin()->first;
    tasks_.emplace(at, std::move(task));
  }
  if (earliest) wake_.notify_one();
}

void Timer::after(std::chrono::milliseconds delay, std::function<void()> task) {
  schedule(Clock::now() + delay, [task = std::move(task)]() -> std::optional<std::chrono::milliseconds> {
    task();
    return std::nullopt;
  });
}

void Timer::repeat(std::chrono::milliseconds first, Repeating task) { schedule(Clock::now() + first, std::move(task)); }

void Timer::stop() {
  std::multimap<Clock::time_point, Repeating> dropped;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    dropped.swap(tasks_);
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Timer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (tasks_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto due = tasks_.begin()->first;
    if (due > Clock::now()) {
      wake_.wait_until(lock, due);
      continue;
    }
    Repeating task = std::move(tasks_.begin()->second);
    tasks_.erase(tasks_.begin());
    lock.unlock();
    std::optional<std::chrono::milliseconds> next;
    try {
      next = task();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a failed task is not rescheduled
    }
    if (next) {
      const auto at = Clock::now() + *next;
      lock.lock();
      if (!stopping_) tasks_.emplace(at, std::move(task));
      lock.unlock();
    }
    task = nullptr;  // release captured state outside the lock
    lock.lock();
  }
}

}  // namespace idem::nats::detail
