// File: tests/conformance/async_as_sync_store.h
//
// AsyncAsSyncStore runs the whole contract suite through a store's
// asynchronous API: each synchronous operation it offers calls the wrapped
// store's *_async form and waits for the answer. On the way it checks the
// threading contract of store.h that the suite cannot see from the
// synchronous side: `done` is called exactly once (never twice, never not
// at all within a generous bound), and the request's memory need only live
// until the *_async call returns (the decorator scribbles over its copy of
// the request as soon as the call returns, so a store that kept a view into
// it reads garbage and fails the suite).
//
// Operations without an asynchronous form (scan, stats, sweep, ping,
// wait_settled) go straight to the wrapped store.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "idem/core/store.h"
#include "support/owned_claim_request.h"

namespace idem::conformance {

class AsyncAsSyncStore final : public Store {
 public:
  explicit AsyncAsSyncStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}

  std::string_view kind() const noexcept override { return inner_->kind(); }

  Result<ClaimOutcome> claim(const ClaimRequest& request) override {
    Owned owned(request);
    return call<ClaimOutcome>("claim_async", [&](ResultCallback<ClaimOutcome> done) {
      inner_->claim_async(owned.request, std::move(done));
      owned.scribble();
    });
  }

  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override {
    std::vector<Owned> owned(requests.begin(), requests.end());
    std::vector<ClaimRequest> views;
    views.reserve(owned.size());
    for (const Owned& o : owned) views.push_back(o.request);
    return call<std::vector<ClaimOutcome>>("claim_many_async", [&](ResultCallback<std::vector<ClaimOutcome>> done) {
      inner_->claim_many_async(views, std::move(done));
      for (Owned& o : owned) o.scribble();
      views.assign(views.size(), ClaimRequest{});
    });
  }

  Status complete(const CompleteRequest& request) override {
    std::string key(request.key);
    std::string result(request.result);
    CompleteRequest copy = request;
    copy.key = key;
    copy.result = result;
    return call_status("complete_async", [&](StatusCallback done) {
      inner_->complete_async(copy, std::move(done));
      scribble(key);
      scribble(result);
    });
  }

  Status fail(const FailRequest& request) override {
    std::string key(request.key);
    std::string error(request.error);
    FailRequest copy = request;
    copy.key = key;
    copy.error = error;
    return call_status("fail_async", [&](StatusCallback done) {
      inner_->fail_async(copy, std::move(done));
      scribble(key);
      scribble(error);
    });
  }

  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    std::string k(key);
    return call_status("extend_async", [&](StatusCallback done) {
      inner_->extend_async(k, token, lease, std::move(done));
      scribble(k);
    });
  }

  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) override {
    std::string k(key);
    Checkpoint copy = checkpoint;
    return call_status("checkpoint_async", [&](StatusCallback done) {
      inner_->checkpoint_async(k, token, copy, std::move(done));
      scribble(k);
      scribble(copy.name);
      scribble(copy.data);
    });
  }

  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    std::string k(key);
    return call<std::optional<IdempotencyRecord>>("get_async",
                                                  [&](ResultCallback<std::optional<IdempotencyRecord>> done) {
                                                    inner_->get_async(k, std::move(done));
                                                    scribble(k);
                                                  });
  }

  Result<bool> remove(std::string_view key) override {
    std::string k(key);
    return call<bool>("remove_async", [&](ResultCallback<bool> done) {
      inner_->remove_async(k, std::move(done));
      scribble(k);
    });
  }

  Result<ScanPage> scan(const ScanOptions& options) override { return inner_->scan(options); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }
  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key,
                                                        std::chrono::milliseconds timeout) override {
    return inner_->wait_settled(key, timeout);
  }
  CircuitState circuit_state() const noexcept override { return inner_->circuit_state(); }
  Result<std::optional<std::uint64_t>> approximate_record_bytes(std::string_view key) override {
    return inner_->approximate_record_bytes(key);
  }

  // The asynchronous forms pass straight through, so that code using them
  // on this decorator reaches the wrapped store.
  bool async_is_native() const noexcept override { return inner_->async_is_native(); }
  void claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) override {
    inner_->claim_async(request, std::move(done));
  }
  void claim_many_async(std::span<const ClaimRequest> requests,
                        ResultCallback<std::vector<ClaimOutcome>> done) override {
    inner_->claim_many_async(requests, std::move(done));
  }
  void complete_async(const CompleteRequest& request, StatusCallback done) override {
    inner_->complete_async(request, std::move(done));
  }
  void fail_async(const FailRequest& request, StatusCallback done) override {
    inner_->fail_async(request, std::move(done));
  }
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override {
    inner_->extend_async(key, token, lease, std::move(done));
  }
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done) override {
    inner_->checkpoint_async(key, token, checkpoint, std::move(done));
  }
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    inner_->get_async(key, std::move(done));
  }
  void remove_async(std::string_view key, ResultCallback<bool> done) override {
    inner_->remove_async(key, std::move(done));
  }

 private:
  // How long an answer may take before the suite calls it lost.
  static constexpr std::chrono::seconds kAnswerBound{60};

  // A request whose strings the decorator owns, so it can overwrite them
  // once the *_async call has returned.
  struct Owned : test::OwnedClaimRequest {
    using OwnedClaimRequest::OwnedClaimRequest;
    void scribble() {
      AsyncAsSyncStore::scribble(key);
      AsyncAsSyncStore::scribble(event_id);
      AsyncAsSyncStore::scribble(event_type);
      AsyncAsSyncStore::scribble(fingerprint);
    }
  };

  static void scribble(std::string& s) { s.assign(s.size(), '#'); }

  // One call's answer: the first `done` fills it, a second one is a failure.
  template <typename T>
  struct Answer {
    std::mutex mutex;
    std::condition_variable ready;
    std::optional<T> value;
    int calls = 0;
  };

  template <typename T, typename Start>
  static Result<T> call(const char* operation, Start&& start) {
    return await<Result<T>>(operation, std::forward<Start>(start));
  }

  template <typename Start>
  static Status call_status(const char* operation, Start&& start) {
    return await<Status>(operation, std::forward<Start>(start));
  }

  template <typename Value, typename Start>
  static Value await(const char* operation, Start&& start) {
    auto answer = std::make_shared<Answer<Value>>();
    start([answer, operation](Value value) {
      std::lock_guard lock(answer->mutex);
      if (++answer->calls > 1) {
        ADD_FAILURE() << operation << ": done was called " << answer->calls << " times";
        return;
      }
      answer->value.emplace(std::move(value));
      answer->ready.notify_all();
    });
    std::unique_lock lock(answer->mutex);
    if (!answer->ready.wait_for(lock, kAnswerBound, [&] { return answer->value.has_value(); })) {
      ADD_FAILURE() << operation << ": done was not called within " << kAnswerBound.count() << " s";
      return Value(Error(ErrorCode::kTimeout, std::string(operation) + ": no answer"));
    }
    return std::move(*answer->value);
  }

  std::shared_ptr<Store> inner_;
};

}  // namespace idem::conformance
