// The Store over the asynchronous operations; see redis_store.h.
#include "stores/redis/redis_store.h"

#include <future>
#include <thread>

namespace idem {
namespace rd = redis_detail;

namespace redis_detail {

RedisStoreImpl::RedisStoreImpl(RedisStoreOptions options, std::shared_ptr<TlsContext> tls)
    : core_(std::move(options), std::move(tls)), topology_(make_topology(core_)) {}

RedisStoreImpl::~RedisStoreImpl() {
  closing_.store(true);
  // Close every connection on the loop thread; what is in flight fails.
  std::promise<void> closed;
  core_.loop().post([this, &closed] {
    topology_->shutdown();
    if (settled_) settled_->shutdown();
    closed.set_value();
  });
  closed.get_future().wait();
  core_.background().join();
  // Retries still waiting on a timer run now, see the store closing, and
  // fail.
  core_.stop_loop();
}

Status RedisStoreImpl::run_sync_status(const std::function<void(StatusCallback)>& start) {
  if (core_.loop().in_loop_thread()) return Error(ErrorCode::kInternal, std::string(kSyncInCallback));
  SyncWaiter waiter;
  std::optional<Status> result;
  start(StatusCallback([&result, &waiter](Status s) {
    result.emplace(std::move(s));
    waiter.signal();
  }));
  waiter.wait();
  return std::move(*result);
}

Result<std::vector<Node*>> RedisStoreImpl::masters_blocking() {
  for (int tries = 0; tries < 2; ++tries) {
    std::vector<Node*> nodes = topology_->masters();
    if (!nodes.empty()) return nodes;
    if (core_.loop().in_loop_thread()) return Error(ErrorCode::kInternal, std::string(kSyncInCallback));
    std::promise<Status> ready;
    topology_->when_ready([&ready](Status st) { ready.set_value(std::move(st)); });
    if (Status st = ready.get_future().get(); !st) return std::move(st).error();
  }
  return map_error(Failure::kServerReply, "CLUSTERDOWN the cluster has no master serving slots");
}

// ---- synchronous forms: async + wait ----------------------------------------

Result<ClaimOutcome> RedisStoreImpl::claim(const ClaimRequest& request) {
  return run_sync<ClaimOutcome>(
      [&](ResultCallback<ClaimOutcome> done) { start_claim(request, confirming(request, std::move(done)), true); });
}

Result<std::vector<ClaimOutcome>> RedisStoreImpl::claim_many(std::span<const ClaimRequest> requests) {
  return run_sync<std::vector<ClaimOutcome>>([&](ResultCallback<std::vector<ClaimOutcome>> done) {
    start_claim_many(requests, confirming(requests, std::move(done)), true);
  });
}

Status RedisStoreImpl::complete(const CompleteRequest& request) {
  return run_sync_status([&](StatusCallback done) { start_complete(request, std::move(done), true); });
}

Status RedisStoreImpl::fail(const FailRequest& request) {
  return run_sync_status([&](StatusCallback done) { start_fail(request, std::move(done), true); });
}

Status RedisStoreImpl::extend(std::string_view key, Token token, std::chrono::milliseconds lease) {
  return run_sync_status([&](StatusCallback done) { start_extend(key, token, lease, std::move(done), true); });
}

Status RedisStoreImpl::checkpoint(std::string_view key, Token token, const Checkpoint& cp) {
  return run_sync_status([&](StatusCallback done) { start_checkpoint(key, token, cp, std::move(done), true); });
}

Result<std::optional<IdempotencyRecord>> RedisStoreImpl::get(std::string_view key) {
  return run_sync<std::optional<IdempotencyRecord>>([&](ResultCallback<std::optional<IdempotencyRecord>> done) {
    start_get(key, kGet, confirming(key, std::move(done)), true);
  });
}

Result<bool> RedisStoreImpl::remove(std::string_view key) {
  return run_sync<bool>([&](ResultCallback<bool> done) { start_remove(key, std::move(done), true); });
}

// ---- asynchronous forms ------------------------------------------------------

void RedisStoreImpl::claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) {
  start_claim(request, confirming(request, std::move(done)), false);
}
void RedisStoreImpl::claim_many_async(std::span<const ClaimRequest> requests,
                                      ResultCallback<std::vector<ClaimOutcome>> done) {
  start_claim_many(requests, confirming(requests, std::move(done)), false);
}
void RedisStoreImpl::complete_async(const CompleteRequest& request, StatusCallback done) {
  start_complete(request, std::move(done), false);
}
void RedisStoreImpl::fail_async(const FailRequest& request, StatusCallback done) {
  start_fail(request, std::move(done), false);
}
void RedisStoreImpl::extend_async(std::string_view key, Token token, std::chrono::milliseconds lease,
                                  StatusCallback done) {
  start_extend(key, token, lease, std::move(done), false);
}
void RedisStoreImpl::checkpoint_async(std::string_view key, Token token, const Checkpoint& cp, StatusCallback done) {
  start_checkpoint(key, token, cp, std::move(done), false);
}
void RedisStoreImpl::get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) {
  start_get(key, kGet, confirming(key, std::move(done)), false);
}
void RedisStoreImpl::remove_async(std::string_view key, ResultCallback<bool> done) {
  start_remove(key, std::move(done), false);
}

RedisClientStats RedisStoreImpl::client_stats() const {
  auto& c = const_cast<StoreCore&>(core_).counters();
  RedisClientStats s;
  s.round_trips = c.connection.round_trips.load();
  s.commands = c.connection.commands.load();
  s.connects = c.connection.connects.load();
  s.retries = c.retries.load();
  s.rejected = c.rejected.load();
  s.redirects = c.redirects.load();
  s.clock_syncs = c.clock_syncs.load();
  s.topology_refreshes = c.topology_refreshes.load();
  s.circuit = core_.circuit();
  for (Node* n : topology_->nodes()) s.nodes.push_back(RedisNodeStats{n->name(), n->breaker().state()});
  return s;
}

bool RedisStoreImpl::on_io_thread() const { return const_cast<StoreCore&>(core_).loop().in_loop_thread(); }

}  // namespace redis_detail

Result<std::shared_ptr<Store>> RedisStore::create(RedisStoreOptions options) {
  if (Status st = options.validate(); !st) return std::move(st).error();
  std::shared_ptr<rd::TlsContext> tls;
  if (options.tls.enabled) {
    Result<std::shared_ptr<rd::TlsContext>> ctx = rd::TlsContext::create(options.tls);
    if (!ctx) return std::move(ctx).error();
    tls = std::move(*ctx);
  }
  auto* impl = new rd::RedisStoreImpl(std::move(options), std::move(tls));
  // The last reference may go away inside a completion callback, on the
  // store's own I/O thread, which cannot join itself: destroy the store from
  // another thread then.
  return std::shared_ptr<Store>(impl, [](rd::RedisStoreImpl* p) {
    if (p->on_io_thread()) {
      std::thread([p] { delete p; }).detach();
    } else {
      delete p;
    }
  });
}

Result<std::shared_ptr<Store>> RedisStore::open(std::string_view url) {
  Result<RedisStoreOptions> opt = parse_url(url);
  if (!opt) return std::move(opt).error();
  return create(std::move(*opt));
}

std::optional<RedisClientStats> RedisStore::client_stats(const Store& store) {
  const auto* impl = dynamic_cast<const rd::RedisStoreImpl*>(&store);
  if (impl == nullptr) return std::nullopt;
  return impl->client_stats();
}

}  // namespace idem
