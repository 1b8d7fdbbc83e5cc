// The asynchronous API seen through the synchronous contract; see async_as_sync.h.
#include "conformance/async_as_sync.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <utility>

namespace idem::conformance {
namespace {

// Waiter is one operation's rendezvous: it fails the test when the callback
// runs twice, and outlives a late second call (shared ownership).
template <typename T>
class Waiter {
 public:
  // callback() is what the store gets.
  auto callback() {
    return [state = state_](T value) {
      if (state->calls.fetch_add(1) != 0) {
        ADD_FAILURE() << "a store callback was called twice";
        return;
      }
      state->promise.set_value(std::move(value));
    };
  }
  T wait() { return state_->promise.get_future().get(); }

 private:
  struct State {
    std::atomic<int> calls{0};
    std::promise<T> promise;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

class AsyncAsSyncStore final : public Store {
 public:
  explicit AsyncAsSyncStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}

  std::string_view kind() const noexcept override { return inner_->kind(); }
  bool async_is_native() const noexcept override { return inner_->async_is_native(); }
  CircuitState circuit_state() const noexcept override { return inner_->circuit_state(); }

  Result<ClaimOutcome> claim(const ClaimRequest& request) override {
    Waiter<Result<ClaimOutcome>> w;
    inner_->claim_async(request, w.callback());
    return w.wait();
  }
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override {
    Waiter<Result<std::vector<ClaimOutcome>>> w;
    inner_->claim_many_async(requests, w.callback());
    return w.wait();
  }
  Status complete(const CompleteRequest& request) override {
    Waiter<Status> w;
    inner_->complete_async(request, w.callback());
    return w.wait();
  }
  Status fail(const FailRequest& request) override {
    Waiter<Status> w;
    inner_->fail_async(request, w.callback());
    return w.wait();
  }
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    Waiter<Status> w;
    inner_->extend_async(key, token, lease, w.callback());
    return w.wait();
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) override {
    Waiter<Status> w;
    inner_->checkpoint_async(key, token, checkpoint, w.callback());
    return w.wait();
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    Waiter<Result<std::optional<IdempotencyRecord>>> w;
    inner_->get_async(key, w.callback());
    return w.wait();
  }
  Result<bool> remove(std::string_view key) override {
    Waiter<Result<bool>> w;
    inner_->remove_async(key, w.callback());
    return w.wait();
  }

  // No asynchronous form: the wrapped store's own.
  Result<ScanPage> scan(const ScanOptions& options) override { return inner_->scan(options); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }
  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key,
                                                        std::chrono::milliseconds timeout) override {
    return inner_->wait_settled(key, timeout);
  }

 private:
  std::shared_ptr<Store> inner_;
};

}  // namespace

std::shared_ptr<Store> async_as_sync(std::shared_ptr<Store> store) {
  if (!store) return nullptr;
  return std::make_shared<AsyncAsSyncStore>(std::move(store));
}

}  // namespace idem::conformance
