// File: tests/unit/async_native_store.h
//
// AsyncNativeStore is a test double of the asynchronous *store API* (not of
// any server) with the threading of Redis and PostgreSQL: async_is_native()
// is true, every *_async call is queued and answered later on the store's
// own "I/O thread", and a synchronous call made on that thread fails with
// kInternal, as store.h says a native store must. The state machine itself is
// a MemoryStore's. Tests can hold the answers back (to keep many calls in
// flight), inject transient errors and lost replies, and count calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "idem/core/store.h"
#include "idem/stores/memory.h"
#include "support/owned_claim_request.h"

namespace idem::test {

class AsyncNativeStore final : public Store {
 public:
  explicit AsyncNativeStore(std::shared_ptr<Store> inner = MemoryStore::create())
      : inner_(std::move(inner)), queue_(std::make_shared<Queue>()) {
    io_ = std::thread([queue = queue_] { run(*queue); });
    io_id_ = io_.get_id();
  }
  // The last reference may go inside one of the store's own callbacks (a
  // guard's state released on the I/O thread): then the thread is detached
  // and finishes on its own, holding the queue.
  ~AsyncNativeStore() override {
    {
      std::lock_guard lock(queue_->mutex);
      queue_->stopping = true;
      queue_->paused = false;
    }
    queue_->wake.notify_all();
    if (io_.get_id() == std::this_thread::get_id()) {
      io_.detach();
    } else {
      io_.join();
    }
  }
  AsyncNativeStore(const AsyncNativeStore&) = delete;
  AsyncNativeStore& operator=(const AsyncNativeStore&) = delete;

  // --- Test controls ---------------------------------------------------------
  // Held answers stay queued until resume().
  void pause() {
    std::lock_guard lock(queue_->mutex);
    queue_->paused = true;
  }
  void resume() {
    {
      std::lock_guard lock(queue_->mutex);
      queue_->paused = false;
    }
    queue_->wake.notify_all();
  }
  std::size_t queued() {
    std::lock_guard lock(queue_->mutex);
    return queue_->tasks.size();
  }
  // The next `n` complete_async calls answer kUnavailable without writing.
  void fail_next_completes(int n) { queue_->failing_completes.store(n); }
  // The next `n` complete_async calls write, then answer kUnavailable (the
  // reply is "lost" on the way back).
  void lose_next_complete_replies(int n) { queue_->lost_complete_replies.store(n); }
  std::thread::id io_thread() const { return io_id_; }
  // How many times each operation was called, by name ("extend_async", "extend", ...).
  int calls(const std::string& op) {
    std::lock_guard lock(queue_->mutex);
    return queue_->calls[op];
  }
  Store& inner() { return *inner_; }

  // --- Store -------------------------------------------------------------------
  std::string_view kind() const noexcept override { return "async-native-test"; }
  bool async_is_native() const noexcept override { return true; }

  Result<ClaimOutcome> claim(const ClaimRequest& r) override {
    return sync("claim", [&] { return inner_->claim(r); });
  }
  Status complete(const CompleteRequest& r) override {
    return sync("complete", [&] { return inner_->complete(r); });
  }
  Status fail(const FailRequest& r) override {
    return sync("fail", [&] { return inner_->fail(r); });
  }
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    return sync("extend", [&] { return inner_->extend(key, token, lease); });
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    return sync("checkpoint", [&] { return inner_->checkpoint(key, token, cp); });
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    return sync("get", [&] { return inner_->get(key); });
  }
  Result<bool> remove(std::string_view key) override {
    return sync("remove", [&] { return inner_->remove(key); });
  }
  Result<ScanPage> scan(const ScanOptions& o) override { return inner_->scan(o); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }

  void claim_async(const ClaimRequest& r, ResultCallback<ClaimOutcome> done) override {
    test::OwnedClaimRequest o(r);
    post("claim_async", [inner = inner_, o, done = std::move(done)] { done(inner->claim(o.request)); });
  }
  void complete_async(const CompleteRequest& r, StatusCallback done) override {
    auto key = std::string(r.key);
    auto result = std::string(r.result);
    CompleteRequest copy = r;
    post("complete_async", [inner = inner_, q = queue_, key, result, copy, done = std::move(done)]() mutable {
      copy.key = key;
      copy.result = result;
      if (take(q->failing_completes)) {
        done(Error(ErrorCode::kUnavailable, "test: injected outage"));
        return;
      }
      Status status = inner->complete(copy);
      if (status && take(q->lost_complete_replies)) {
        done(Error(ErrorCode::kTimeout, "test: the reply was lost"));
        return;
      }
      done(std::move(status));
    });
  }
  void fail_async(const FailRequest& r, StatusCallback done) override {
    auto key = std::string(r.key);
    auto error = std::string(r.error);
    FailRequest copy = r;
    post("fail_async", [inner = inner_, key, error, copy, done = std::move(done)]() mutable {
      copy.key = key;
      copy.error = error;
      done(inner->fail(copy));
    });
  }
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override {
    post("extend_async", [inner = inner_, k = std::string(key), token, lease, done = std::move(done)] {
      done(inner->extend(k, token, lease));
    });
  }
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done) override {
    post("checkpoint_async", [inner = inner_, k = std::string(key), token, cp, done = std::move(done)] {
      done(inner->checkpoint(k, token, cp));
    });
  }
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    post("get_async", [inner = inner_, k = std::string(key), done = std::move(done)] { done(inner->get(k)); });
  }
  void remove_async(std::string_view key, ResultCallback<bool> done) override {
    post("remove_async", [inner = inner_, k = std::string(key), done = std::move(done)] { done(inner->remove(k)); });
  }

 private:
  static bool take(std::atomic<int>& budget) {
    int n = budget.load();
    while (n > 0 && !budget.compare_exchange_weak(n, n - 1)) {
    }
    return n > 0;
  }

  struct Queue {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void()>> tasks;
    std::map<std::string, int> calls;
    bool paused = false;
    bool stopping = false;
    std::atomic<int> failing_completes{0};
    std::atomic<int> lost_complete_replies{0};
  };

  template <typename F>
  auto sync(const char* op, F&& f) -> decltype(f()) {
    {
      std::lock_guard lock(queue_->mutex);
      ++queue_->calls[op];
    }
    if (std::this_thread::get_id() == io_id_) {
      return Error(ErrorCode::kInternal, std::string("test store: synchronous ") + op + " on the I/O thread");
    }
    return f();
  }

  // Tasks hold the inner store and the queue, never `this`: they may run
  // after this object is gone (see the destructor).
  void post(const char* op, std::function<void()> task) {
    {
      std::lock_guard lock(queue_->mutex);
      ++queue_->calls[op];
      queue_->tasks.push_back(std::move(task));
    }
    queue_->wake.notify_one();
  }

  static void run(Queue& q) {
    std::unique_lock lock(q.mutex);
    for (;;) {
      q.wake.wait(lock, [&] { return q.stopping || (!q.paused && !q.tasks.empty()); });
      if (q.tasks.empty()) return;  // stopping, and everything answered
      auto task = std::move(q.tasks.front());
      q.tasks.pop_front();
      lock.unlock();
      try {
        task();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the store contract drops callback exceptions
      }
      task = nullptr;  // may release the last reference to this store: see the destructor
      lock.lock();
    }
  }

  std::shared_ptr<Store> inner_;
  std::shared_ptr<Queue> queue_;
  std::thread io_;
  std::thread::id io_id_;
};

}  // namespace idem::test
