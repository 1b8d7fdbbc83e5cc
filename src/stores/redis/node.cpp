// One Redis server: connections, breaker, clock; see node.h.
#include "stores/redis/node.h"

namespace idem::redis_detail {

// ClockProbe is the TIME request that refreshes the clock estimate.
class Node::ClockProbe final : public Request {
 public:
  explicit ClockProbe(Node& node) : node_(node) {}

  void send() {
    sent_ = Clock::now();
    node_.pick().submit(*this, &format, nullptr);
  }

  void complete(std::span<ReplyPtr> replies, const IoError* error) override {
    const auto received = Clock::now();
    if (error == nullptr && !replies.empty()) {
      const redisReply* r = replies[0].get();
      long long seconds = 0;
      long long micros = 0;
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && reply_int(r->element[0], seconds) &&
          reply_int(r->element[1], micros)) {
        node_.clock_.observe(seconds * 1'000'000 + micros, sent_, received);
        node_.core_.counters().clock_syncs.fetch_add(1, std::memory_order_relaxed);
      }
    }
    node_.clock_.end_refresh();
  }

 private:
  static void format(void* /*context*/, std::string& out) { out += "*1\r\n$4\r\nTIME\r\n"; }

  Node& node_;
  Clock::time_point sent_{};
};

Node::Node(StoreCore& core, RedisEndpoint endpoint, Open open, std::function<void()> on_breaker_change,
           Connection::BrokenHook on_broken)
    : core_(core),
      endpoint_(std::move(endpoint)),
      name_(endpoint_.host + ":" + std::to_string(endpoint_.port)),
      breaker_(breaker_settings(core.options().circuit_breaker),
               [changed = std::move(on_breaker_change)](CircuitState) {
                 if (changed) changed();
               }),
      probe_(std::make_unique<ClockProbe>(*this)) {
  for (std::size_t i = 0; i < core.options().pool_size; ++i) {
    pool_.push_back(std::make_unique<Connection>(
        core.loop(), core.background(), [this, open] { return open(*this); }, core.options().command_timeout,
        core.counters().connection, on_broken));
  }
}

Node::~Node() = default;

Connection& Node::pick() {
  const std::size_t n = pool_.size();
  const std::size_t start = next_.fetch_add(1, std::memory_order_relaxed);
  if (n > 1) {
    for (std::size_t i = 0; i < n; ++i) {
      Connection& c = *pool_[(start + i) % n];
      if (c.idle()) return c;
    }
  }
  return *pool_[start % n];
}

void Node::refresh_clock() {
  const auto now = Clock::now();
  if (!clock_.needs_refresh(now) || !clock_.try_begin_refresh(now)) return;
  probe_->send();
}

void Node::reset(const std::string& why) {
  for (auto& c : pool_) c->reset(why);
}

void Node::shutdown() {
  for (auto& c : pool_) c->shutdown();
}

}  // namespace idem::redis_detail
