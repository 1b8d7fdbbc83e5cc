// File: tests/integration/nats_support.h
//
// Helpers for the NATS integration tests:
//  * JetStream inspection that bypasses the consumer (consumer state, the
//    messages a stream holds), to check what the server saw;
//  * store decorators: FlakyStore (switch the store "down": every call fails
//    with kUnavailable, like an outage) and NativeAsyncStore (answers the
//    *_async calls later on its own I/O thread, as Redis and PostgreSQL do),
//    so the consumer's native-async path is exercised on a real store.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/store.h"
#include "idem/integrations/nats.h"
#include "support/nats_server.h"

namespace idem::test {

// wait_until() polls `pred` every 10 ms until it holds or `timeout` passes;
// returns its last value.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// slurp() returns a file's contents ("" when it cannot be read).
std::string slurp(const std::string& path);

// NatsSuite is a fixture base with one nats-server -js per test suite; tests
// isolate themselves by stream name. SetUp() skips (or, with
// IDEM_REQUIRE_SERVERS=1, fails) when the server could not start.
class NatsSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = NatsServer::start(&start_error_); }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override {
    if (!server_) IDEM_SKIP_OR_FAIL(start_error_);
  }
  static NatsServer& server() { return *server_; }

 private:
  static inline std::unique_ptr<NatsServer> server_;
  static inline std::string start_error_;
};

struct ConsumerState {
  std::uint64_t num_pending = 0;      // not yet delivered
  std::uint64_t num_ack_pending = 0;  // delivered, not acked or termed
  std::uint64_t num_redelivered = 0;
  std::uint64_t ack_floor_stream = 0;  // every stream sequence <= this is acked
};
std::optional<ConsumerState> consumer_state(nats::Connection& connection, const std::string& stream,
                                            const std::string& durable, std::string* error = nullptr);

struct StoredMessage {
  std::uint64_t sequence = 0;
  std::string subject;
  std::string data;
  nats::Headers headers;
  std::string header(std::string_view name) const;  // first value, "" when absent
};
// Every message a stream holds, in sequence order.
std::vector<StoredMessage> stream_messages(nats::Connection& connection, const std::string& stream,
                                           std::string* error = nullptr);

// A store that forwards everything to `inner`.
class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}
  std::string_view kind() const noexcept override { return inner_->kind(); }
  Result<ClaimOutcome> claim(const ClaimRequest& r) override { return inner_->claim(r); }
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> r) override {
    return inner_->claim_many(r);
  }
  Status complete(const CompleteRequest& r) override { return inner_->complete(r); }
  Status fail(const FailRequest& r) override { return inner_->fail(r); }
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    return inner_->extend(key, token, lease);
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& c) override {
    return inner_->checkpoint(key, token, c);
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override { return inner_->get(key); }
  Result<bool> remove(std::string_view key) override { return inner_->remove(key); }
  Result<ScanPage> scan(const ScanOptions& o) override { return inner_->scan(o); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }

 protected:
  std::shared_ptr<Store> inner_;
};

// FlakyStore fails every call with kUnavailable while down.
class FlakyStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void set_down(bool down) { down_.store(down); }
  std::uint64_t refused() const { return refused_.load(); }

  Result<ClaimOutcome> claim(const ClaimRequest& r) override;
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> r) override;
  Status complete(const CompleteRequest& r) override;
  Status fail(const FailRequest& r) override;
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override;
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override;

 private:
  Error outage();
  std::atomic<bool> down_{false};
  std::atomic<std::uint64_t> refused_{0};
};

// NativeAsyncStore answers *_async calls on its own thread, after the call
// returned (like a store with native asynchronous I/O), and counts on which
// threads its callbacks ran.
class NativeAsyncStore final : public ForwardingStore {
 public:
  explicit NativeAsyncStore(std::shared_ptr<Store> inner);
  ~NativeAsyncStore() override;
  bool async_is_native() const noexcept override { return true; }
  void claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) override;
  void claim_many_async(std::span<const ClaimRequest> requests,
                        ResultCallback<std::vector<ClaimOutcome>> done) override;
  void complete_async(const CompleteRequest& request, StatusCallback done) override;
  void fail_async(const FailRequest& request, StatusCallback done) override;
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override;
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override;
  std::uint64_t async_calls() const { return calls_.load(); }

 private:
  void post(std::function<void()> task);
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> calls_{0};
  std::thread io_;
};

}  // namespace idem::test
