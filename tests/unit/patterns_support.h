// File: tests/unit/patterns_support.h
//
// Helpers for the pattern tests: envelopes, and a store decorator that can be
// switched into an outage to exercise the fail-closed/fail-open policies.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "idem/core/store.h"
#include "idem/idem.h"

namespace idem::testing {

inline Envelope make_envelope(std::string id, std::string payload = R"({"amount":10})") {
  Envelope e;
  e.event_id = std::move(id);
  e.event_type = "payment.created";
  EXPECT_TRUE(e.set_payload_json(payload).ok());
  return e;
}

// OutageStore forwards to a real store until down is set; then every call
// fails with kUnavailable, as a real network store does when its server dies.
class OutageStore final : public Store {
 public:
  explicit OutageStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> down{false};

  std::string_view kind() const noexcept override { return inner_->kind(); }
  Result<ClaimOutcome> claim(const ClaimRequest& r) override {
    if (down) return outage();
    return inner_->claim(r);
  }
  Status complete(const CompleteRequest& r) override {
    if (down) return outage();
    return inner_->complete(r);
  }
  Status fail(const FailRequest& r) override {
    if (down) return outage();
    return inner_->fail(r);
  }
  Status extend(std::string_view k, Token t, std::chrono::milliseconds l) override {
    if (down) return outage();
    return inner_->extend(k, t, l);
  }
  Status checkpoint(std::string_view k, Token t, const Checkpoint& c) override {
    if (down) return outage();
    return inner_->checkpoint(k, t, c);
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view k) override {
    if (down) return outage();
    return inner_->get(k);
  }
  Result<bool> remove(std::string_view k) override {
    if (down) return outage();
    return inner_->remove(k);
  }
  Result<ScanPage> scan(const ScanOptions& o) override {
    if (down) return outage();
    return inner_->scan(o);
  }
  Result<StoreStats> stats() override {
    if (down) return outage();
    return inner_->stats();
  }
  Result<SweepReport> sweep() override {
    if (down) return outage();
    return inner_->sweep();
  }
  Status ping() override {
    if (down) return outage();
    return inner_->ping();
  }

 private:
  static Error outage() { return {ErrorCode::kUnavailable, "store is down (test outage)"}; }
  std::shared_ptr<Store> inner_;
};

}  // namespace idem::testing
