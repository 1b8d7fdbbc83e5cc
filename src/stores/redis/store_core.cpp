// The shared parts of one store; see store_core.h.
#include "stores/redis/store_core.h"

#include "stores/redis/scripts.h"

namespace idem::redis_detail {

StoreCore::StoreCore(RedisStoreOptions options, std::shared_ptr<TlsContext> tls)
    : options_(std::move(options)),
      tls_(std::move(tls)),
      wait_replicas_(std::to_string(options_.wait_replicas)),
      wait_timeout_(std::to_string(options_.wait_timeout.count())),
      loop_(std::make_unique<EventLoop>()) {
  // Every new connection authenticates, selects the db and loads the scripts
  // in one pipelined round trip, so NOSCRIPT is rare (SCRIPT FLUSH).
  if (!options_.password.empty()) {
    if (options_.username.empty()) {
      append_command(auth_.bytes, {"AUTH", options_.password});
    } else {
      append_command(auth_.bytes, {"AUTH", options_.username, options_.password});
    }
    auth_.replies = 1;
  }
  handshake_ = auth_;
  if (options_.db != 0) {
    const std::string db = std::to_string(options_.db);
    append_command(handshake_.bytes, {"SELECT", db});
    ++handshake_.replies;
  }
  for (const Script& s : scripts()) {
    append_command(handshake_.bytes, {"SCRIPT", "LOAD", s.body});
    ++handshake_.replies;
  }
}

StoreCore::~StoreCore() {
  background_.join();
  loop_.reset();
}

Result<std::unique_ptr<Socket>> StoreCore::open_socket(const RedisEndpoint& endpoint, ServerClock& clock,
                                                       bool must_be_master) {
  auto conn =
      BlockingConnection::connect(endpoint, tls_.get(), options_.connect_timeout, options_.command_timeout, handshake_);
  if (!conn) return std::move(conn).error();
  std::vector<ReplyPtr> replies;
  if (must_be_master) {
    std::string role;
    append_command(role, {"ROLE"});
    if (Status st = (*conn)->roundtrip(role, 1, replies, Clock::now() + options_.command_timeout); !st) {
      return std::move(st).error();
    }
    const redisReply* r = replies[0].get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || reply_text(r->element[0]) != "master") {
      return map_error(Failure::kReset, "sentinel named " + endpoint.host + ":" + std::to_string(endpoint.port) +
                                            " as master but it is not (failover in progress)");
    }
  }
  // The clock sample gets a round trip of its own: the handshake's includes
  // compiling the scripts, which would only widen the uncertainty.
  std::string time;
  append_command(time, {"TIME"});
  const auto sent = Clock::now();
  if (Status st = (*conn)->roundtrip(time, 1, replies, sent + options_.command_timeout); !st) {
    return std::move(st).error();
  }
  const auto received = Clock::now();
  const redisReply* r = replies[0].get();
  long long seconds = 0;
  long long micros = 0;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && reply_int(r->element[0], seconds) &&
      reply_int(r->element[1], micros)) {
    clock.observe(seconds * 1'000'000 + micros, sent, received);
    counters_.clock_syncs.fetch_add(1, std::memory_order_relaxed);
  } else if (r->type == REDIS_REPLY_ERROR) {
    return map_error(Failure::kServerReply, reply_text(r));
  }
  // Anything else: no clock; claims then go through the claim script.
  return (*conn)->release();
}

void StoreCore::circuit_changed(const std::function<CircuitState()>& aggregate) {
  bool changed = false;
  CircuitState now = CircuitState::kClosed;
  {
    std::lock_guard lock(circuit_mutex_);
    now = aggregate();
    changed = circuit_.exchange(now, std::memory_order_acq_rel) != now;
  }
  if (changed && options_.on_circuit_change) options_.on_circuit_change(now);
}

}  // namespace idem::redis_detail
