// File: src/stores/redis/redis_store.h
//
// RedisStoreImpl is the Store: every operation is asynchronous underneath
// (operation.h, on the event loop of store_core.h), and the synchronous
// methods are "async + wait" on a SyncWaiter (sync_wait.h), which lets a
// caller alone on an idle connection do its own I/O.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "idem/stores/redis.h"
#include "stores/redis/claim_cache.h"
#include "stores/redis/operation.h"
#include "stores/redis/store_core.h"
#include "stores/redis/subscriber.h"
#include "stores/redis/sync_wait.h"
#include "stores/redis/topology.h"

namespace idem::redis_detail {

class SettleWatch;

class RedisStoreImpl final : public Store {
 public:
  RedisStoreImpl(RedisStoreOptions options, std::shared_ptr<TlsContext> tls);
  ~RedisStoreImpl() override;

  std::string_view kind() const noexcept override { return "redis"; }
  bool async_is_native() const noexcept override { return true; }

  Result<ClaimOutcome> claim(const ClaimRequest& request) override;
  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override;
  Status complete(const CompleteRequest& request) override;
  Status fail(const FailRequest& request) override;
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override;
  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) override;
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override;
  Result<bool> remove(std::string_view key) override;
  Result<ScanPage> scan(const ScanOptions& options) override;
  Result<StoreStats> stats() override;
  Result<SweepReport> sweep() override { return SweepReport{}; }  // Redis expires keys itself
  Status ping() override;
  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key,
                                                        std::chrono::milliseconds timeout) override;
  CircuitState circuit_state() const noexcept override { return core_.circuit(); }

  void claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) override;
  void claim_many_async(std::span<const ClaimRequest> requests,
                        ResultCallback<std::vector<ClaimOutcome>> done) override;
  void complete_async(const CompleteRequest& request, StatusCallback done) override;
  void fail_async(const FailRequest& request, StatusCallback done) override;
  void extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) override;
  void checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done) override;
  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override;
  void remove_async(std::string_view key, ResultCallback<bool> done) override;

  RedisClientStats client_stats() const;
  // on_io_thread() is true on the store's I/O thread.
  bool on_io_thread() const;

  // The operations' entry points (claim_ops.cpp, owner_ops.cpp, read_ops.cpp):
  // `sync` says a synchronous call waits for it on this thread.
  void start_claim(const ClaimRequest& request, ResultCallback<ClaimOutcome> done, bool sync);
  void start_claim_many(std::span<const ClaimRequest> requests, ResultCallback<std::vector<ClaimOutcome>> done,
                        bool sync);
  void start_complete(const CompleteRequest& request, StatusCallback done, bool sync);
  void start_fail(const FailRequest& request, StatusCallback done, bool sync);
  void start_extend(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done, bool sync);
  void start_checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done,
                        bool sync);
  void start_get(std::string_view key, ScriptId script, ResultCallback<std::optional<IdempotencyRecord>> done,
                 bool sync);
  void start_remove(std::string_view key, ResultCallback<bool> done, bool sync);
  void start_scan_page(const ScanOptions& options, ResultCallback<ScanPage> done, bool sync);
  void start_command(Node* node, std::vector<std::string> args, ResultCallback<std::string> done, bool sync);

  // With wait_replicas, a claim or read that finds a final record reports it
  // only once the replicas confirm it (confirm_ops.cpp); without, `done` as is.
  ResultCallback<ClaimOutcome> confirming(const ClaimRequest& request, ResultCallback<ClaimOutcome> done);
  ResultCallback<std::vector<ClaimOutcome>> confirming(std::span<const ClaimRequest> requests,
                                                       ResultCallback<std::vector<ClaimOutcome>> done);
  ResultCallback<std::optional<IdempotencyRecord>> confirming(std::string_view key,
                                                              ResultCallback<std::optional<IdempotencyRecord>> done);
  void start_confirm(std::string key, const IdempotencyRecord& seen, const char* what, StatusCallback done);

 private:
  friend class SettleWatch;

  // run_sync() runs an operation started by `start(done, sync=true)` and
  // waits for it on this thread.
  template <typename T, typename Start>
  Result<T> run_sync(Start&& start);
  Status run_sync_status(const std::function<void(StatusCallback)>& start);

  // Routing that must be known before an operation can start (scan, ping).
  Result<std::vector<Node*>> masters_blocking();

  OpContext context() { return OpContext{core_, *topology_, closing_, claims_}; }
  Subscriber& settled_subscriber();

  StoreCore core_;
  std::atomic<bool> closing_{false};
  std::unique_ptr<Topology> topology_;
  ClaimCache claims_;

  std::once_flag settled_once_;
  std::unique_ptr<Subscriber> settled_;  // wait_settled's, made on first use
  std::shared_ptr<SettleWatch> watch_;
};

inline constexpr std::string_view kSyncInCallback =
    "redis: a synchronous store call from a completion callback (on the store's I/O thread) would wait for the "
    "thread it blocks; use the *_async form there, or hand the work to a thread of your own";

template <typename T, typename Start>
Result<T> RedisStoreImpl::run_sync(Start&& start) {
  if (core_.loop().in_loop_thread()) return Error(ErrorCode::kInternal, std::string(kSyncInCallback));
  SyncWaiter waiter;
  std::optional<Result<T>> result;
  start(ResultCallback<T>([&result, &waiter](Result<T> r) {
    result.emplace(std::move(r));
    waiter.signal();
  }));
  waiter.wait();
  return std::move(*result);
}

}  // namespace idem::redis_detail
