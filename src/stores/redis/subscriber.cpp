// A subscribe-mode connection; see subscriber.h.
#include "stores/redis/subscriber.h"

#include <array>
#include <vector>

namespace idem::redis_detail {

Subscriber::Subscriber(EventLoop& loop, Background& background, Open open, OnMessage on_message, OnState on_state)
    : loop_(loop),
      background_(background),
      open_(std::move(open)),
      on_message_(std::move(on_message)),
      on_state_(std::move(on_state)) {}

Subscriber::~Subscriber() = default;

void Subscriber::add(const std::string& channel) {
  bool service = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kClosed) return;
    if (++channels_[channel] != 1) return;
    if (state_ == State::kReady) {
      append_command(out_, {"SUBSCRIBE", channel});
      service = true;
    } else if (state_ == State::kDisconnected) {
      connect_locked();
    }
  }
  if (service) loop_.service(this);
}

void Subscriber::remove(const std::string& channel) {
  bool service = false;
  {
    std::lock_guard lock(mutex_);
    auto it = channels_.find(channel);
    if (it == channels_.end() || --it->second > 0) return;
    channels_.erase(it);
    if (state_ == State::kReady) {
      append_command(out_, {"UNSUBSCRIBE", channel});
      service = true;
    }
  }
  if (service) loop_.service(this);
}

void Subscriber::connect_locked() {
  state_ = State::kConnecting;
  if (!background_.run([this] { finish_connect(open_()); })) state_ = State::kClosed;
}

void Subscriber::finish_connect(Result<std::unique_ptr<Socket>> socket) {
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kClosed) return;
    if (!socket) {
      state_ = State::kDisconnected;
    } else {
      socket_ = std::move(*socket);
      reader_ = std::make_unique<ReplyReader>();
      state_ = State::kReady;
      backoff_ = std::chrono::milliseconds(50);
      out_.clear();
      for (const auto& [channel, refs] : channels_) append_command(out_, {"SUBSCRIBE", channel});
      loop_.watch(socket_->fd(), this);
      loop_.arm(socket_->fd(), this, false);
    }
  }
  if (socket) {
    loop_.service(this);
  } else {
    schedule_reconnect();
  }
}

void Subscriber::schedule_reconnect() {
  std::chrono::milliseconds delay{};
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kDisconnected) return;
    delay = backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(2'000));
  }
  loop_.post_at(Clock::now() + delay, [this] {
    std::lock_guard lock(mutex_);
    if (state_ == State::kDisconnected && !channels_.empty()) connect_locked();
  });
}

void Subscriber::fail(const std::string& /*why*/) {
  std::vector<std::string> lost;
  std::unique_ptr<Socket> old;
  {
    std::lock_guard lock(mutex_);
    if (socket_) loop_.unwatch(socket_->fd());
    old = std::move(socket_);
    reader_.reset();
    wbuf_.clear();
    out_.clear();
    if (state_ != State::kClosed) state_ = State::kDisconnected;
    for (const auto& [channel, refs] : channels_) lost.push_back(channel);
  }
  old.reset();
  if (on_state_) {
    for (const std::string& channel : lost) on_state_(channel, false);
  }
  schedule_reconnect();
}

void Subscriber::on_service() {
  IoFailure failure;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kReady) return;
    wbuf_.append(out_);
    out_.clear();
  }
  if (wbuf_.empty() && !socket_->has_pending()) return;
  std::size_t consumed = 0;
  const bool ok = wbuf_.empty() ? socket_->flush(failure) : socket_->send(wbuf_, consumed, failure);
  wbuf_.erase(0, consumed);
  if (!ok) {
    fail(failure.detail);
    return;
  }
  // Left over: be told when the socket takes more.
  if (!wbuf_.empty() || socket_->has_pending()) loop_.arm(socket_->fd(), this, true);
}

void Subscriber::on_ready(std::uint32_t /*events*/) {
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kReady) return;
  }
  IoFailure failure;
  std::array<char, 16 * 1024> buf;  // NOLINT(cppcoreguidelines-pro-type-member-init): filled by recv
  bool ok = true;
  for (;;) {
    std::size_t n = 0;
    if (!socket_->recv(buf.data(), buf.size(), n, failure)) {
      ok = false;
      break;
    }
    if (n == 0) break;
    reader_->feed(buf.data(), n);
  }
  for (;;) {
    ReplyPtr reply;
    if (!reader_->next(reply)) {
      ok = false;
      break;
    }
    if (!reply) break;
    const redisReply* r = reply.get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) continue;  // errors: the waiters poll instead
    const std::string_view kind = reply_text(r->element[0]);
    const std::string_view channel = reply_text(r->element[1]);
    if (kind == "message") {
      on_message_(channel, reply_text(r->element[2]));
    } else if (kind == "subscribe" && on_state_) {
      on_state_(channel, true);
    }
  }
  if (ok) {
    loop_.arm(socket_->fd(), this, false);  // the next message (one-shot)
    on_service();                           // pending TLS output, new subscriptions
  } else {
    fail(failure.detail);
  }
}

void Subscriber::shutdown() {
  std::unique_ptr<Socket> old;
  {
    std::lock_guard lock(mutex_);
    state_ = State::kClosed;
    if (socket_) loop_.unwatch(socket_->fd());
    old = std::move(socket_);
  }
}

}  // namespace idem::redis_detail
