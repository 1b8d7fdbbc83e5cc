#include "inline_worker.h"

#include <cxxabi.h>

#include <atomic>
#include <thread>
#include <vector>

namespace idem::python {

namespace {
// Every worker started, for quiesce_all(). Leaked: it must outlive them.
struct Registry {
  std::mutex mutex;
  std::vector<std::weak_ptr<InlineWorker>> workers;
};
Registry& registry() {
  static auto* r = new Registry();
  return *r;
}
std::atomic<bool> g_quiesced{false};
}  // namespace

std::shared_ptr<InlineWorker> InlineWorker::start() {
  auto worker = std::make_shared<InlineWorker>();
  {
    std::lock_guard lock(registry().mutex);
    std::erase_if(registry().workers, [](const std::weak_ptr<InlineWorker>& w) { return w.expired(); });
    registry().workers.push_back(worker);
  }
  std::thread([worker] { worker->run(); }).detach();
  return worker;
}

void InlineWorker::quiesce_all(std::chrono::milliseconds timeout) {
  g_quiesced.store(true);
  std::vector<std::shared_ptr<InlineWorker>> live;
  {
    std::lock_guard lock(registry().mutex);
    for (const auto& w : registry().workers) {
      if (auto worker = w.lock()) live.push_back(std::move(worker));
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& worker : live) {
    std::unique_lock lock(worker->mutex_);
    worker->idle_.wait_until(lock, deadline, [&] { return worker->idle(); });
  }
}

void InlineWorker::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (!exited_ && !g_quiesced.load()) {
      queue_.push_back(std::move(task));
      wake_.notify_one();
      return;
    }
  }
  // The thread ended (its processor is gone) but a late call came, e.g. the
  // verdict of a guard that outlived it: make it here rather than drop it.
  task();
}

void InlineWorker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
}

void InlineWorker::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {  // stopping, and nothing left to do
      exited_ = true;
      idle_.notify_all();
      return;
    }
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    try {
      task();
    } catch (abi::__forced_unwind&) {
      throw;  // the thread is being cancelled: let it end
    } catch (...) {
      // Tasks report through their own callbacks; nothing may escape a thread.
    }
    task = nullptr;  // what it held (a Completion, Python references) goes now, unlocked
    lock.lock();
    busy_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace idem::python
