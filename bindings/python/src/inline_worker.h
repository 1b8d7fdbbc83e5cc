// File: bindings/python/src/inline_worker.h
//
// InlineWorker makes the "asynchronous" store calls of a store whose
// asynchronous API completes inline (memory, SQLite: async_is_native() is
// false) on a thread of its own, so that an asyncio loop that issues them
// never waits for the store. One thread per processor, first in first out:
// a checkpoint queued before the verdict is written before it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace idem::python {

class InlineWorker {
 public:
  // start() launches the (detached) thread; it ends after stop() once the
  // queue is empty, and owns the worker's state until then.
  static std::shared_ptr<InlineWorker> start();

  // post() queues `task`; it runs without the GIL on the worker thread (or
  // here, when the thread has already ended).
  void post(std::function<void()> task);
  // stop() lets the thread finish what is queued and end. It does not join:
  // the last reference may be dropped on the worker thread itself.
  void stop();

  // quiesce_all() is called at interpreter exit (before finalization): it
  // waits, up to `timeout`, until every worker is idle, and from then on
  // post() runs tasks on the calling thread. A detached thread that still
  // ran store calls while the process tears down its statics would crash.
  static void quiesce_all(std::chrono::milliseconds timeout);

 private:
  void run();
  bool idle() const { return queue_.empty() && !busy_; }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  bool exited_ = false;
  bool busy_ = false;
};

}  // namespace idem::python
