// The standalone topology: one server, always ready.
#include "stores/redis/topology.h"

namespace idem::redis_detail {

std::unique_ptr<Topology> make_sentinel_topology(StoreCore& core);
std::unique_ptr<Topology> make_cluster_topology(StoreCore& core);

CircuitState worst(CircuitState a, CircuitState b) {
  return static_cast<std::uint8_t>(a) >= static_cast<std::uint8_t>(b) ? a : b;
}

namespace {

class StandaloneTopology final : public Topology {
 public:
  explicit StandaloneTopology(StoreCore& core)
      : node_(
            core, core.options().endpoints.front(),
            [&core](Node& n) { return core.open_socket(n.endpoint(), n.clock(), false); },
            [this, &core] { core.circuit_changed([this] { return node_.breaker().state(); }); }) {}

  Node* route(std::string_view) override { return &node_; }
  void when_ready(std::function<void(Status)> resume) override { resume({}); }
  std::vector<Node*> masters() override { return {&node_}; }
  std::vector<Node*> nodes() override { return {&node_}; }
  CircuitState aggregate_circuit() override { return node_.breaker().state(); }
  Result<RedisEndpoint> pubsub_endpoint() override { return node_.endpoint(); }
  void shutdown() override { node_.shutdown(); }

 private:
  Node node_;
};

}  // namespace

std::unique_ptr<Topology> make_topology(StoreCore& core) {
  switch (core.options().mode) {
    case RedisMode::kSentinel: return make_sentinel_topology(core);
    case RedisMode::kCluster: return make_cluster_topology(core);
    case RedisMode::kStandalone:
    default: return std::make_unique<StandaloneTopology>(core);
  }
}

}  // namespace idem::redis_detail
