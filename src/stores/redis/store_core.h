// File: src/stores/redis/store_core.h
//
// StoreCore is what every part of one RedisStore shares: the options, the I/O
// loop, the background threads, TLS, the connection handshake, counters, and
// the aggregate circuit state. Topologies and nodes hold a reference to it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "idem/stores/redis.h"
#include "stores/redis/background.h"
#include "stores/redis/blocking_connection.h"
#include "stores/redis/connection.h"
#include "stores/redis/event_loop.h"
#include "stores/redis/server_clock.h"
#include "stores/redis/tls_context.h"

namespace idem::redis_detail {

class Node;

struct StoreCounters {
  ConnectionCounters connection;
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> redirects{0};
  std::atomic<std::uint64_t> clock_syncs{0};
  std::atomic<std::uint64_t> topology_refreshes{0};
};

class StoreCore {
 public:
  StoreCore(RedisStoreOptions options, std::shared_ptr<TlsContext> tls);
  ~StoreCore();

  const RedisStoreOptions& options() const { return options_; }
  const TlsContext* tls() const { return tls_.get(); }
  EventLoop& loop() { return *loop_; }
  Background& background() { return background_; }
  StoreCounters& counters() { return counters_; }
  const Handshake& handshake() const { return handshake_; }
  // auth_handshake() is only AUTH (for CLUSTER SLOTS on a fresh connection).
  const Handshake& auth_handshake() const { return auth_; }
  // The arguments of WAIT, formatted once.
  const std::string& wait_replicas_text() const { return wait_replicas_; }
  const std::string& wait_timeout_text() const { return wait_timeout_; }

  // open_socket() connects to `endpoint`, runs the handshake, samples the
  // server clock into `clock` and hands the socket over. With
  // `must_be_master`, a server whose ROLE is not master is refused (a
  // sentinel may still name a demoted master during a failover). Blocking;
  // runs on a background thread.
  Result<std::unique_ptr<Socket>> open_socket(const RedisEndpoint& endpoint, ServerClock& clock, bool must_be_master);

  // circuit_changed() recomputes the aggregate circuit state (the worst of
  // the nodes', from `aggregate`, called under a lock so that concurrent
  // transitions settle on the last word) and tells on_circuit_change when it
  // moved.
  void circuit_changed(const std::function<CircuitState()>& aggregate);
  CircuitState circuit() const { return circuit_.load(std::memory_order_acquire); }

  // stop_loop() ends the I/O thread (store destruction); run() first
  // whatever must still happen on it.
  void stop_loop() { loop_.reset(); }

 private:
  RedisStoreOptions options_;
  std::shared_ptr<TlsContext> tls_;
  Handshake handshake_;
  Handshake auth_;
  std::string wait_replicas_;
  std::string wait_timeout_;
  StoreCounters counters_;
  std::atomic<CircuitState> circuit_{CircuitState::kClosed};
  std::mutex circuit_mutex_;
  Background background_;
  std::unique_ptr<EventLoop> loop_;  // last: its thread stops first
};

}  // namespace idem::redis_detail
