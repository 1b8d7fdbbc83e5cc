// wait_settled(): a duplicate that finds its key in progress waits for the
// original to finish and wakes as soon as it does.
//
// The waiter subscribes to idem:settled:<key>, then reads the record with the
// watch script, which flags a PROCESSING record (M -> W); complete and fail
// PUBLISH on that channel when they finish a flagged record. Records nobody
// waits for cost nothing extra. What no PUBLISH announces is covered by
// timers: the lease running out (a crashed owner), the caller's timeout, and
// a safety poll every second (a removed key; a lost subscription). Without a
// subscription (none yet, or the connection is down) the waiter polls with
// the default backoff.
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "idem/core/limits.h"
#include "stores/redis/redis_store.h"

namespace idem::redis_detail {

// SettleWatch routes the subscriber's news to the waiters of each channel.
class SettleWatch {
 public:
  struct Waiter {
    std::mutex mutex;
    std::condition_variable changed;
    bool subscribed = false;
    std::uint64_t events = 0;
  };

  void add(const std::string& channel, Waiter* w) {
    std::lock_guard lock(mutex_);
    waiters_.emplace(channel, w);
  }

  void remove(const std::string& channel, Waiter* w) {
    std::lock_guard lock(mutex_);
    auto [begin, end] = waiters_.equal_range(channel);
    for (auto it = begin; it != end; ++it) {
      if (it->second == w) {
        waiters_.erase(it);
        return;
      }
    }
  }

  // Loop thread.
  void notify(std::string_view channel, std::optional<bool> subscribed) {
    std::lock_guard lock(mutex_);
    auto [begin, end] = waiters_.equal_range(channel);
    for (auto it = begin; it != end; ++it) {
      Waiter* w = it->second;
      std::lock_guard wlock(w->mutex);
      if (subscribed) w->subscribed = *subscribed;
      ++w->events;
      w->changed.notify_all();
    }
  }

 private:
  std::mutex mutex_;
  std::multimap<std::string, Waiter*, std::less<>> waiters_;
};

Subscriber& RedisStoreImpl::settled_subscriber() {
  std::call_once(settled_once_, [this] {
    watch_ = std::make_shared<SettleWatch>();
    settled_ = std::make_unique<Subscriber>(
        core_.loop(), core_.background(),
        [this]() -> Result<std::unique_ptr<Socket>> {
          Result<RedisEndpoint> ep = topology_->pubsub_endpoint();
          if (!ep) return std::move(ep).error();
          const RedisStoreOptions& o = core_.options();
          auto conn = BlockingConnection::connect(*ep, core_.tls(), o.connect_timeout, o.command_timeout,
                                                  core_.auth_handshake());
          if (!conn) return std::move(conn).error();
          return (*conn)->release();
        },
        [watch = watch_](std::string_view channel, std::string_view) { watch->notify(channel, std::nullopt); },
        [watch = watch_](std::string_view channel, bool subscribed) { watch->notify(channel, subscribed); });
  });
  return *settled_;
}

Result<std::optional<IdempotencyRecord>> RedisStoreImpl::wait_settled(std::string_view key,
                                                                      std::chrono::milliseconds timeout) {
  using Steady = std::chrono::steady_clock;
  using std::chrono::milliseconds;
  if (key.empty()) return Error(ErrorCode::kInvalidArgument, "redis: empty key");
  // A negative timeout counts as 0; a huge one saturates (store.h).
  const auto deadline = saturating_add(Steady::now(), std::max(timeout, milliseconds(0)));
  const std::string channel = "idem:settled:" + std::string(key);
  Subscriber& subscriber = settled_subscriber();
  SettleWatch::Waiter waiter;
  watch_->add(channel, &waiter);
  subscriber.add(channel);
  struct Leave {
    Subscriber& subscriber;
    SettleWatch& watch;
    const std::string& channel;
    SettleWatch::Waiter* waiter;
    ~Leave() {
      subscriber.remove(channel);
      watch.remove(channel, waiter);
    }
  } leave{subscriber, *watch_, channel, &waiter};
  {
    // A flag set before the subscription is active could be announced to
    // nobody: wait (briefly) for the confirmation first.
    std::unique_lock lock(waiter.mutex);
    waiter.changed.wait_until(lock, std::min(deadline, Steady::now() + milliseconds(250)),
                              [&] { return waiter.subscribed; });
  }
  milliseconds poll(2);
  for (;;) {
    bool subscribed = false;
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(waiter.mutex);
      subscribed = waiter.subscribed;
      seen = waiter.events;
    }
    Result<std::optional<IdempotencyRecord>> record =
        run_sync<std::optional<IdempotencyRecord>>([&](ResultCallback<std::optional<IdempotencyRecord>> done) {
          start_get(key, subscribed ? kWatch : kGet, confirming(key, std::move(done)), true);
        });
    if (!record || !*record) return record;
    const auto wall = std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
    if ((*record)->status != ProcessingStatus::kProcessing || !(*record)->lease_valid(wall)) return record;
    const auto now = Steady::now();
    if (now >= deadline) return record;
    const auto lease_left = (*record)->lease_expires_at - wall + milliseconds(1);
    milliseconds step = subscribed ? milliseconds(1'000) : poll;
    if (!subscribed) poll = std::min(poll * 2, milliseconds(200));
    const auto until = std::min({deadline, now + lease_left, now + step});
    std::unique_lock lock(waiter.mutex);
    waiter.changed.wait_until(lock, until, [&] { return waiter.events != seen; });
  }
}

}  // namespace idem::redis_detail
