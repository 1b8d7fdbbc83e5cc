// File: src/integrations/nats/timer.h
//
// Timer runs tasks at given times on one thread: the consumer's heartbeats
// (lease renewal + InProgress) and delayed retries. Tasks must be short; a
// repeating task returns the delay until its next run, or nullopt to stop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace idem::nats::detail {

class Timer {
 public:
  using Clock = std::chrono::steady_clock;
  using Repeating = std::function<std::optional<std::chrono::milliseconds>()>;

  Timer();
  ~Timer();  // stop()
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Runs `task` once after `delay`.
  void after(std::chrono::milliseconds delay, std::function<void()> task);
  // Runs `task` after `first`, then after each delay it returns.
  void repeat(std::chrono::milliseconds first, Repeating task);
  // Drops pending tasks and joins the thread. Idempotent; not from the
  // timer's own thread.
  void stop();

 private:
  void run();
  void schedule(Clock::time_point at, Repeating task);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<Clock::time_point, Repeating> tasks_;  // guarded by mutex_
  bool stopping_ = false;                              // guarded by mutex_
  std::thread thread_;
};

}  // namespace idem::nats::detail
