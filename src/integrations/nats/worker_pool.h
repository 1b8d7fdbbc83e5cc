// File: src/integrations/nats/worker_pool.h
//
// WorkerPool runs the consumer's handlers (which may block: disk, network)
// and, for stores that complete inline, the store calls. A fixed number of
// threads share one FIFO queue.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace idem::nats::detail {

class WorkerPool {
 public:
  using Task = std::function<void()>;

  explicit WorkerPool(std::size_t threads);
  ~WorkerPool();  // stop()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // post() queues `task`; false once the pool is stopping (the task is
  // dropped: its owner must not depend on it running).
  bool post(Task task);
  // True on one of this pool's threads.
  bool on_worker_thread() const noexcept;
  // Stops taking tasks, drops those still queued, joins the threads (a task
  // already running is waited for). Idempotent; not from a pool thread.
  void stop();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> queue_;  // guarded by mutex_
  bool stopping_ = false;   // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace idem::nats::detail
