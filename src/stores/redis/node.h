// File: src/stores/redis/node.h
//
// Node is one Redis server the store talks to (the standalone server, the
// Sentinel master, one Cluster master): its pool of pipelined connections,
// its own circuit breaker and its own clock estimate.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "stores/redis/circuit_breaker.h"
#include "stores/redis/connection.h"
#include "stores/redis/server_clock.h"
#include "stores/redis/store_core.h"

namespace idem::redis_detail {

class Node {
 public:
  // Open is how a connection of this node connects (directly, or through
  // Sentinel); runs on a background thread.
  using Open = std::function<Result<std::unique_ptr<Socket>>(Node&)>;
  // on_broken is told of every transport failure of a connection.
  Node(StoreCore& core, RedisEndpoint endpoint, Open open, std::function<void()> on_breaker_change,
       Connection::BrokenHook on_broken = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const RedisEndpoint& endpoint() const { return endpoint_; }
  const std::string& name() const { return name_; }
  CircuitBreaker& breaker() { return breaker_; }
  ServerClock& clock() { return clock_; }

  // pick() returns the connection for the next request: an idle one when
  // there is one (so that a lone synchronous caller can drive it itself),
  // else the next in turn.
  Connection& pick();

  // refresh_clock() sends one TIME when the clock estimate is getting old
  // (at most one in flight).
  void refresh_clock();

  // reset() closes every connection (the node's role changed).
  void reset(const std::string& why);
  // shutdown() closes everything for good (loop thread).
  void shutdown();

 private:
  class ClockProbe;

  StoreCore& core_;
  RedisEndpoint endpoint_;
  std::string name_;
  CircuitBreaker breaker_;
  ServerClock clock_;
  std::vector<std::unique_ptr<Connection>> pool_;
  std::atomic<std::size_t> next_{0};
  std::unique_ptr<ClockProbe> probe_;
};

}  // namespace idem::redis_detail
