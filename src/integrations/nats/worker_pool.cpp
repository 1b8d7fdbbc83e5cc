#include "integrations/nats/worker_pool.h"

namespace idem::nats::detail {
namespace {
// The pool whose thread this is (null elsewhere), for on_worker_thread().
thread_local const WorkerPool* current_pool = nullptr;
}  // namespace

WorkerPool::WorkerPool(std::size_t threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::post(Task task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

bool WorkerPool::on_worker_thread() const noexcept { return current_pool == this; }

void WorkerPool::stop() {
  std::deque<Task> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  // `dropped` dies here, outside the lock: its tasks may own the last
  // reference to objects whose destructors take other locks.
}

void WorkerPool::run() {
  current_pool = this;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      task();
    } catch (...) {  // NOLINT(bugprone-empty-catch): tasks report their own errors
    }
    task = nullptr;  // release what it holds before taking the lock again
    lock.lock();
  }
}

}  // namespace idem::nats::detail
