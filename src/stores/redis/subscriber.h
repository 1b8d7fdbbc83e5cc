// File: src/stores/redis/subscriber.h
//
// Subscriber is one connection in Redis's subscribe mode, on the event loop:
// it (re)subscribes to a reference-counted set of channels, reconnects with a
// backoff after any failure, and hands every message to a callback. Sentinel
// clients use it for +switch-master; wait_settled() for idem:settled:<key>.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "stores/redis/background.h"
#include "stores/redis/event_loop.h"
#include "stores/redis/resp.h"
#include "stores/redis/socket.h"

namespace idem::redis_detail {

class Subscriber final : public EventLoop::Handler {
 public:
  // Open connects (and authenticates); blocking, on a background thread.
  using Open = std::function<Result<std::unique_ptr<Socket>>()>;
  // OnMessage gets every message; OnState says a channel's subscription was
  // confirmed (true) or lost with the connection (false). Loop thread.
  using OnMessage = std::function<void(std::string_view channel, std::string_view payload)>;
  using OnState = std::function<void(std::string_view channel, bool subscribed)>;

  Subscriber(EventLoop& loop, Background& background, Open open, OnMessage on_message, OnState on_state = {});
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // add() / remove() take and drop a reference to `channel`. Any thread.
  void add(const std::string& channel);
  void remove(const std::string& channel);

  // shutdown() closes the connection for good. Loop thread.
  void shutdown();

  void on_ready(std::uint32_t events) override;
  void on_service() override;
  Deadline on_tick(Deadline) override { return Deadline::max(); }

 private:
  enum class State : std::uint8_t { kDisconnected, kConnecting, kReady, kClosed };

  void connect_locked();
  void finish_connect(Result<std::unique_ptr<Socket>> socket);
  void fail(const std::string& why);
  void schedule_reconnect();

  EventLoop& loop_;
  Background& background_;
  Open open_;
  OnMessage on_message_;
  OnState on_state_;

  std::mutex mutex_;
  State state_ = State::kDisconnected;
  std::map<std::string, int, std::less<>> channels_;
  std::string out_;
  std::unique_ptr<Socket> socket_;  // used by the loop thread only once ready
  std::unique_ptr<ReplyReader> reader_;
  std::chrono::milliseconds backoff_{50};
  std::string wbuf_;  // loop thread
};

}  // namespace idem::redis_detail
