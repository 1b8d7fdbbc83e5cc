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

namespace idem::test {

class AsyncNativeStore final : public Store {
 public:
  explicit AsyncNativeStore(std::shared_ptr<Store> inner = MemoryStore::create())
      : inner_(std::move(inner)), io_([this] { run(); }) {}
  ~AsyncNativeStore() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      paused_ = false;
    }
    wake_.notify_all();
    io_.join();
  }
  AsyncNativeStore(const AsyncNativeStore&) = delete;
  AsyncNativeStore& operator=(const AsyncNativeStore&) = delete;

  // --- Test controls ---------------------------------------------------------
  // Held answers stay queued until resume().
  void pause() {
    std::lock_guard lock(mutex_);
    paused_ = true;
  }
  void resume() {
    {
      std::lock_guard lock(mutex_);
      paused_ = false;
    }
    wake_.notify_all();
  }
  std::size_t queued() {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }
  // The next `n` complete_async calls answer kUnavailable without writing.
  void fail_next_completes(int n) { failing_completes_.store(n); }
  // The next `n` complete_async calls write, then answer kUnavailable (the
  // reply is "lost" on the way back).
  void lose_next_complete_replies(int n) { lost_complete_replies_.store(n); }
  std::thread::id io_thread() const { return io_.get_id(); }
  // How many times each operation was called, by name ("extend_async", "extend", ...).
  int calls(const std::string& op) {
    std::lock_guard lock(mutex_);
    return calls_[op];
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
    Owned o(r);
    post("claim_async", [this, o, done = std::move(done)] { done(inner_->claim(o.request)); });
  }
  void complete_async(const CompleteRequest& r, StatusCallback done) override {
    auto key = std::string(r.key);
    auto result = std::string(r.result);
    CompleteRequest copy = r;
    post("complete_async", [this, key, result, copy, done = std::move(done)]() mutable {
      copy.key = key;
      copy.result = result;
      if (take(failing_completes_)) {
        done(Error(ErrorCode::kUnavailable, "test: injected outage"));
        return;
      }
      Status status = inner_->complete(copy);
      if (status && take(lost_complete_replies_)) {
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
    post("fail_async", [this, key, error, copy, done = std::move(done)]() mutable {
      copy.key = key;
      copy.error = error;
      done(inner_->fail(copy));
    });
  }
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override {
    post("extend_async",
         [this, k = std::string(key), token, lease, done = std::move(done)] { done(inner_->extend(k, token, lease)); });
  }
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done) override {
    post("checkpoint_async",
         [this, k = std::string(key), token, cp, done = std::move(done)] { done(inner_->checkpoint(k, token, cp)); });
  }
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    post("get_async", [this, k = std::string(key), done = std::move(done)] { done(inner_->get(k)); });
  }
  void remove_async(std::string_view key, ResultCallback<bool> done) override {
    post("remove_async", [this, k = std::string(key), done = std::move(done)] { done(inner_->remove(k)); });
  }

 private:
  struct Owned {
    explicit Owned(const ClaimRequest& r)
        : key(r.key), event_id(r.event_id), event_type(r.event_type), fingerprint(r.fingerprint), request(r) {
      request.key = key;
      request.event_id = event_id;
      request.event_type = event_type;
      request.fingerprint = fingerprint;
    }
    Owned(const Owned& other) : Owned(other.request) {}
    Owned& operator=(const Owned&) = delete;
    std::string key, event_id, event_type, fingerprint;
    ClaimRequest request;
  };

  static bool take(std::atomic<int>& budget) {
    int n = budget.load();
    while (n > 0 && !budget.compare_exchange_weak(n, n - 1)) {
    }
    return n > 0;
  }

  template <typename F>
  auto sync(const char* op, F&& f) -> decltype(f()) {
    {
      std::lock_guard lock(mutex_);
      ++calls_[op];
    }
    if (std::this_thread::get_id() == io_.get_id()) {
      return Error(ErrorCode::kInternal, std::string("test store: synchronous ") + op + " on the I/O thread");
    }
    return f();
  }

  void post(const char* op, std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      ++calls_[op];
      queue_.push_back(std::move(task));
    }
    wake_.notify_one();
  }

  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || (!paused_ && !queue_.empty()); });
      if (queue_.empty()) return;  // stopping, and everything answered
      auto task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      try {
        task();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the store contract drops callback exceptions
      }
      lock.lock();
    }
  }

  std::shared_ptr<Store> inner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  std::map<std::string, int> calls_;
  bool paused_ = false;
  bool stopping_ = false;
  std::atomic<int> failing_completes_{0};
  std::atomic<int> lost_complete_replies_{0};
  std::thread io_;  // last: starts after everything it uses
};

}  // namespace idem::test
