// The Sentinel topology: one master, found by asking the sentinels on every
// (re)connect, and followed through failovers: the store subscribes to
// +switch-master on a sentinel, so a failover closes the connections to the
// old master at once instead of waiting for an error on them.
#include <string>
#include <vector>

#include "stores/redis/subscriber.h"
#include "stores/redis/topology.h"

namespace idem::redis_detail {
namespace {

class SentinelTopology final : public Topology {
 public:
  explicit SentinelTopology(StoreCore& core)
      : core_(core),
        node_(
            core, RedisEndpoint{"sentinel:" + core.options().master_name, 0},
            [this](Node& n) { return open_master(n); },
            [this, &core] { core.circuit_changed([this] { return node_.breaker().state(); }); }),
        switches_(
            core.loop(), core.background(), [this] { return open_sentinel(); },
            [this](std::string_view channel, std::string_view payload) { on_switch(channel, payload); }) {
    switches_.add("+switch-master");
  }

  Node* route(std::string_view) override { return &node_; }
  void when_ready(std::function<void(Status)> resume) override { resume({}); }
  std::vector<Node*> masters() override { return {&node_}; }
  std::vector<Node*> nodes() override { return {&node_}; }
  CircuitState aggregate_circuit() override { return node_.breaker().state(); }
  Result<RedisEndpoint> pubsub_endpoint() override { return discover(); }
  void shutdown() override {
    switches_.shutdown();
    node_.shutdown();
  }

 private:
  Handshake sentinel_handshake() const {
    Handshake h;
    if (!core_.options().sentinel_password.empty()) {
      append_command(h.bytes, {"AUTH", core_.options().sentinel_password});
      h.replies = 1;
    }
    return h;
  }

  // discover() asks the sentinels, in order, for the master's address.
  Result<RedisEndpoint> discover() {
    const RedisStoreOptions& o = core_.options();
    std::string last = "no sentinel answered";
    std::string query;
    append_command(query, {"SENTINEL", "get-master-addr-by-name", o.master_name});
    const Handshake hs = sentinel_handshake();
    for (const RedisEndpoint& s : o.endpoints) {
      auto sc = BlockingConnection::connect(s, core_.tls(), o.connect_timeout, o.command_timeout, hs);
      if (!sc) {
        last = sc.error().message();
        continue;
      }
      std::vector<ReplyPtr> replies;
      if (Status st = (*sc)->roundtrip(query, 1, replies, Clock::now() + o.command_timeout); !st) {
        last = st.error().message();
        continue;
      }
      const redisReply* r = replies[0].get();
      long long port = 0;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_int(r->element[1], port) || port <= 0 ||
          port > 65535) {
        last = "sentinel " + s.host + ":" + std::to_string(s.port) + " does not know master '" + o.master_name + "'";
        continue;
      }
      return RedisEndpoint{std::string(reply_text(r->element[0])), static_cast<std::uint16_t>(port)};
    }
    return map_error(Failure::kRefused, "sentinel: " + last);
  }

  Result<std::unique_ptr<Socket>> open_master(Node& node) {
    Result<RedisEndpoint> master = discover();
    if (!master) return std::move(master).error();
    return core_.open_socket(*master, node.clock(), /*must_be_master=*/true);
  }

  // The +switch-master subscription rotates over the sentinels.
  Result<std::unique_ptr<Socket>> open_sentinel() {
    const RedisStoreOptions& o = core_.options();
    const Handshake hs = sentinel_handshake();
    Error last(ErrorCode::kUnavailable, "redis: sentinel: none answered");
    for (std::size_t i = 0; i < o.endpoints.size(); ++i) {
      const RedisEndpoint& s = o.endpoints[(next_sentinel_++) % o.endpoints.size()];
      auto sc = BlockingConnection::connect(s, core_.tls(), o.connect_timeout, o.command_timeout, hs);
      if (sc) return (*sc)->release();
      last = std::move(sc).error();
    }
    return last;
  }

  // "+switch-master <name> <old ip> <old port> <new ip> <new port>"
  void on_switch(std::string_view channel, std::string_view payload) {
    if (channel != "+switch-master") return;
    const std::string& name = core_.options().master_name;
    if (!payload.starts_with(name) || payload.size() == name.size() || payload[name.size()] != ' ') return;
    node_.reset("sentinel announced a failover (" + std::string(payload) + ")");
  }

  StoreCore& core_;
  Node node_;
  std::size_t next_sentinel_ = 0;  // background threads only, one at a time
  Subscriber switches_;
};

}  // namespace

std::unique_ptr<Topology> make_sentinel_topology(StoreCore& core) { return std::make_unique<SentinelTopology>(core); }

}  // namespace idem::redis_detail
