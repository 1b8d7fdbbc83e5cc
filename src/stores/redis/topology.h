// File: src/stores/redis/topology.h
//
// Topology answers "which node serves this key?" for one deployment shape:
// a standalone server, a master found through Sentinel, or a Redis Cluster.
// It owns the nodes, keeps the routing current (Sentinel failovers, Cluster
// slot maps) and is told of redirections and broken connections.
#pragma once

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "stores/redis/node.h"
#include "stores/redis/store_core.h"

namespace idem::redis_detail {

class Topology {
 public:
  virtual ~Topology() = default;

  // route() returns the node serving `key`; nullptr while the routing is
  // not known yet (then when_ready()).
  virtual Node* route(std::string_view key) = 0;

  // when_ready() calls `resume` on the loop thread once routing can be
  // tried again: OK when it may work now, an error when it cannot be known
  // (no seed node answered).
  virtual void when_ready(std::function<void(Status)> resume) = 0;

  // masters() is every node holding keys (for scan, stats, ping); empty
  // while unknown (then when_ready()).
  virtual std::vector<Node*> masters() = 0;

  // redirect() follows a -MOVED / -ASK reply: the node to re-send to, or
  // nullptr when the reply is malformed. `asking` says ASK.
  virtual Node* redirect(std::string_view reply, bool& asking) {
    (void)reply;
    asking = false;
    return nullptr;
  }

  // pubsub_endpoint() is a server to SUBSCRIBE on for the scripts'
  // PUBLISH (the master; any node of a Cluster, which relays PUBLISH to every
  // node). Blocking; background thread.
  virtual Result<RedisEndpoint> pubsub_endpoint() = 0;

  // aggregate_circuit() is the worst circuit state of the nodes.
  virtual CircuitState aggregate_circuit() = 0;

  // nodes() is every node, for statistics.
  virtual std::vector<Node*> nodes() = 0;

  // shutdown() closes every connection for good (loop thread).
  virtual void shutdown() = 0;
};

// make_topology() builds the topology for options.mode.
std::unique_ptr<Topology> make_topology(StoreCore& core);

// Shared by the topologies.
CircuitState worst(CircuitState a, CircuitState b);

}  // namespace idem::redis_detail
