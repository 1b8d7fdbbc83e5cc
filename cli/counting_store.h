// File: cli/counting_store.h
//
// CountingStore forwards every call to a store and counts the round trips
// (`idem bench`'s store calls per event). Counting here rather than through
// an Observer keeps the guard's unobserved fast path: an observer makes the
// checker read the clock around every store call for latencies the bench
// does not need. Counts are striped per thread so that threads do not share
// a hot cache line.
#pragma once

#include <array>
#include <atomic>
#include <memory>

#include "idem/core/store.h"

namespace idem::cli {

class CountingStore final : public Store {
 public:
  explicit CountingStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}

  std::uint64_t total() const {
    std::uint64_t sum = 0;
    for (const auto& c : counts_) sum += c.value.load(std::memory_order_relaxed);
    return sum;
  }

  std::string_view kind() const noexcept override { return inner_->kind(); }
  Result<ClaimOutcome> claim(const ClaimRequest& r) override {
    count();
    return inner_->claim(r);
  }
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> r) override {
    count();
    return inner_->claim_many(r);
  }
  Status complete(const CompleteRequest& r) override {
    count();
    return inner_->complete(r);
  }
  Status fail(const FailRequest& r) override {
    count();
    return inner_->fail(r);
  }
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    count();
    return inner_->extend(key, token, lease);
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    count();
    return inner_->checkpoint(key, token, cp);
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    count();
    return inner_->get(key);
  }
  Result<bool> remove(std::string_view key) override {
    count();
    return inner_->remove(key);
  }
  Result<ScanPage> scan(const ScanOptions& o) override { return inner_->scan(o); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }
  Result<std::optional<std::uint64_t>> approximate_record_bytes(std::string_view key) override {
    return inner_->approximate_record_bytes(key);
  }
  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key,
                                                        std::chrono::milliseconds timeout) override {
    count();
    return inner_->wait_settled(key, timeout);
  }
  CircuitState circuit_state() const noexcept override { return inner_->circuit_state(); }

  bool async_is_native() const noexcept override { return inner_->async_is_native(); }
  void claim_async(const ClaimRequest& r, ResultCallback<ClaimOutcome> done) override {
    count();
    inner_->claim_async(r, std::move(done));
  }
  void claim_many_async(std::span<const ClaimRequest> r, ResultCallback<std::vector<ClaimOutcome>> done) override {
    count();
    inner_->claim_many_async(r, std::move(done));
  }
  void complete_async(const CompleteRequest& r, StatusCallback done) override {
    count();
    inner_->complete_async(r, std::move(done));
  }
  void fail_async(const FailRequest& r, StatusCallback done) override {
    count();
    inner_->fail_async(r, std::move(done));
  }
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override {
    count();
    inner_->extend_async(key, token, lease, std::move(done));
  }
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done) override {
    count();
    inner_->checkpoint_async(key, token, cp, std::move(done));
  }
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    count();
    inner_->get_async(key, std::move(done));
  }
  void remove_async(std::string_view key, ResultCallback<bool> done) override {
    count();
    inner_->remove_async(key, std::move(done));
  }

 private:
  void count() noexcept {
    thread_local const std::size_t stripe = next_stripe_.fetch_add(1, std::memory_order_relaxed) % kStripes;
    counts_[stripe].value.fetch_add(1, std::memory_order_relaxed);
  }

  static constexpr std::size_t kStripes = 16;
  struct alignas(64) Padded {
    std::atomic<std::uint64_t> value{0};
  };
  std::shared_ptr<Store> inner_;
  std::array<Padded, kStripes> counts_{};
  static inline std::atomic<std::size_t> next_stripe_{0};
};

}  // namespace idem::cli
