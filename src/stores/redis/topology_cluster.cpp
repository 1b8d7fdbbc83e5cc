// The Cluster topology: a slot map from CLUSTER SLOTS (CRC16 with hash tags),
// refreshed when it is needed and missing, after -MOVED, and after any broken
// connection (a dead master sends no -MOVED: only a refresh finds the replica
// that took over its slots).
#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "stores/redis/topology.h"

namespace idem::redis_detail {
namespace {

constexpr std::size_t kSlots = 16384;
// A refresh is at most this frequent, however many connections break.
constexpr auto kMinRefreshInterval = std::chrono::milliseconds(100);

std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  for (char ch : data) {
    const auto c = static_cast<unsigned char>(ch);
    crc = static_cast<std::uint16_t>(crc ^ (c << 8));
    for (int i = 0; i < 8; ++i) {
      crc =
          (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc;
}

// key_slot() follows the Cluster spec, hash tags included.
std::size_t key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) % kSlots;
}

class ClusterTopology final : public Topology {
 public:
  explicit ClusterTopology(StoreCore& core) : core_(core) {
    for (auto& s : slots_) s.store(nullptr, std::memory_order_relaxed);
  }

  Node* route(std::string_view key) override { return slots_[key_slot(key)].load(std::memory_order_acquire); }

  void when_ready(std::function<void(Status)> resume) override {
    std::lock_guard lock(refresh_mutex_);
    waiters_.push_back(std::move(resume));
    start_refresh_locked();
  }

  std::vector<Node*> masters() override {
    std::lock_guard lock(masters_mutex_);
    return masters_;
  }

  std::vector<Node*> nodes() override {
    std::lock_guard lock(nodes_mutex_);
    std::vector<Node*> out;
    for (auto& [id, n] : nodes_) out.push_back(n.get());
    return out;
  }

  CircuitState aggregate_circuit() override {
    CircuitState out = CircuitState::kClosed;
    for (Node* n : masters()) out = worst(out, n->breaker().state());
    return out;
  }

  Result<RedisEndpoint> pubsub_endpoint() override {
    // Rotate, so that a dead node is not asked forever.
    std::vector<Node*> all = masters();
    if (all.empty()) return core_.options().endpoints[next_pubsub_++ % core_.options().endpoints.size()];
    return all[next_pubsub_++ % all.size()]->endpoint();
  }

  // "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
  Node* redirect(std::string_view text, bool& asking) override {
    const bool moved = text.starts_with("MOVED ");
    asking = text.starts_with("ASK ");
    if (!moved && !asking) return nullptr;
    std::string_view rest = text.substr(text.find(' ') + 1);
    const auto sp = rest.find(' ');
    if (sp == std::string_view::npos) return nullptr;
    long long slot = 0;
    if (!text_int(rest.substr(0, sp), slot) || slot < 0 || slot >= static_cast<long long>(kSlots)) return nullptr;
    std::string_view addr = rest.substr(sp + 1);
    const auto colon = addr.rfind(':');
    long long port = 0;
    if (colon == std::string_view::npos || !text_int(addr.substr(colon + 1), port) || port <= 0 || port > 65535) {
      return nullptr;
    }
    std::string_view host = addr.substr(0, colon);
    if (host.empty()) host = core_.options().endpoints.front().host;
    Node* n = node_for_address(host, static_cast<std::uint16_t>(port));
    if (moved) {
      slots_[static_cast<std::size_t>(slot)].store(n, std::memory_order_release);
      request_refresh();  // other slots probably moved too
    }
    return n;
  }

  void shutdown() override {
    closing_.store(true);
    for (Node* n : nodes()) n->shutdown();
  }

 private:
  void request_refresh() {
    if (closing_.load()) return;
    std::lock_guard lock(refresh_mutex_);
    if (Clock::now() - last_refresh_ < kMinRefreshInterval) return;
    start_refresh_locked();
  }

  void start_refresh_locked() {
    if (refreshing_) return;
    refreshing_ = true;
    const bool started = core_.background().run([this] {
      Status st = refresh();
      finish_refresh(std::move(st));
    });
    if (!started) {
      refreshing_ = false;
      fail_waiters_locked(Error(ErrorCode::kUnavailable, "redis: the store is closed"));
    }
  }

  void fail_waiters_locked(const Status& st) {
    for (auto& w : waiters_) {
      core_.loop().post([w = std::move(w), st] { w(st); });
    }
    waiters_.clear();
  }

  void finish_refresh(Status st) {
    std::lock_guard lock(refresh_mutex_);
    refreshing_ = false;
    last_refresh_ = Clock::now();
    fail_waiters_locked(st);
  }

  Node* node_for_address(std::string_view host, std::uint16_t port) {
    std::string id = std::string(host) + ":" + std::to_string(port);
    std::lock_guard lock(nodes_mutex_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) {
      auto node = std::make_unique<Node>(
          core_, RedisEndpoint{std::string(host), port},
          [this](Node& n) { return core_.open_socket(n.endpoint(), n.clock(), false); },
          [this] { core_.circuit_changed([this] { return aggregate_circuit(); }); },
          [this](const Error&) { request_refresh(); });
      it = nodes_.emplace(std::move(id), std::move(node)).first;
    }
    return it->second.get();
  }

  // refresh() asks the seeds, then every node known, for CLUSTER SLOTS.
  // Blocking; background thread.
  Status refresh() {
    core_.counters().topology_refreshes.fetch_add(1, std::memory_order_relaxed);
    const RedisStoreOptions& o = core_.options();
    std::vector<RedisEndpoint> candidates;
    for (Node* n : masters()) candidates.push_back(n->endpoint());
    for (const RedisEndpoint& ep : o.endpoints) candidates.push_back(ep);
    for (Node* n : nodes()) candidates.push_back(n->endpoint());
    std::string query;
    append_command(query, {"CLUSTER", "SLOTS"});
    Error last(ErrorCode::kUnavailable, "redis: cluster: no seed node answered");
    std::vector<std::string> tried;
    for (const RedisEndpoint& ep : candidates) {
      const std::string id = ep.host + ":" + std::to_string(ep.port);
      if (std::find(tried.begin(), tried.end(), id) != tried.end()) continue;
      tried.push_back(id);
      auto c =
          BlockingConnection::connect(ep, core_.tls(), o.connect_timeout, o.command_timeout, core_.auth_handshake());
      if (!c) {
        last = std::move(c).error();
        continue;
      }
      std::vector<ReplyPtr> replies;
      if (Status st = (*c)->roundtrip(query, 1, replies, Clock::now() + o.command_timeout); !st) {
        last = std::move(st).error();
        continue;
      }
      const redisReply* r = replies[0].get();
      if (r->type == REDIS_REPLY_ERROR) {
        last = map_error(Failure::kServerReply, reply_text(r));
        continue;
      }
      if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        last = map_error(Failure::kUnexpected, "unexpected reply: CLUSTER SLOTS from " + id);
        continue;
      }
      std::vector<std::pair<std::pair<long long, long long>, Node*>> ranges;
      std::vector<Node*> masters;
      bool ok = true;
      for (std::size_t i = 0; i < r->elements && ok; ++i) {
        const redisReply* e = r->element[i];
        long long lo = 0;
        long long hi = 0;
        long long port = 0;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !reply_int(e->element[0], lo) ||
            !reply_int(e->element[1], hi) || lo < 0 || hi >= static_cast<long long>(kSlots) || lo > hi ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            !reply_int(e->element[2]->element[1], port) || port <= 0 || port > 65535) {
          ok = false;
          break;
        }
        std::string_view host = reply_text(e->element[2]->element[0]);
        Node* n = node_for_address(host.empty() ? std::string_view(ep.host) : host, static_cast<std::uint16_t>(port));
        if (std::find(masters.begin(), masters.end(), n) == masters.end()) masters.push_back(n);
        ranges.push_back({{lo, hi}, n});
      }
      if (!ok) {
        last = map_error(Failure::kUnexpected, "unexpected reply: CLUSTER SLOTS entry from " + id);
        continue;
      }
      std::sort(masters.begin(), masters.end(), [](const Node* a, const Node* b) {
        return std::tie(a->endpoint().host, a->endpoint().port) < std::tie(b->endpoint().host, b->endpoint().port);
      });
      std::array<Node*, kSlots> table{};
      for (const auto& [range, n] : ranges) {
        for (long long s = range.first; s <= range.second; ++s) table[static_cast<std::size_t>(s)] = n;
      }
      for (std::size_t s = 0; s < kSlots; ++s) slots_[s].store(table[s], std::memory_order_release);
      {
        std::lock_guard lock(masters_mutex_);
        masters_ = std::move(masters);
      }
      return {};
    }
    return last;
  }

  StoreCore& core_;
  std::atomic<bool> closing_{false};
  std::atomic<std::size_t> next_pubsub_{0};
  std::array<std::atomic<Node*>, kSlots> slots_;

  std::mutex nodes_mutex_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;  // never shrinks: slots point into it

  std::mutex masters_mutex_;
  std::vector<Node*> masters_;  // sorted by address, so scan cursors stay valid

  std::mutex refresh_mutex_;
  bool refreshing_ = false;
  Deadline last_refresh_{};
  std::vector<std::function<void(Status)>> waiters_;
};

}  // namespace

std::unique_ptr<Topology> make_cluster_topology(StoreCore& core) { return std::make_unique<ClusterTopology>(core); }

}  // namespace idem::redis_detail
