#include "core/lease_keeper.h"

namespace idem::detail {

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t LeaseKeeper::add(std::shared_ptr<IdempotencyChecker> checker, std::string key, Token token,
                               std::chrono::milliseconds interval, std::shared_ptr<std::atomic<bool>> lost) {
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    id = next_id_++;
    entries_.emplace(id, Entry{std::move(checker), std::move(key), token, interval,
                               std::chrono::steady_clock::now() + interval, std::move(lost)});
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  wake_.notify_one();
  return id;
}

void LeaseKeeper::remove(std::uint64_t id) {
  std::unique_lock lock(mutex_);
  entries_.erase(id);
  // A renewal of this entry may be running unlocked right now; wait for it so
  // that no extend() lands after the caller completed the record.
  renewal_done_.wait(lock, [&] { return renewing_id_ != id; });
}

void LeaseKeeper::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto next = std::chrono::steady_clock::time_point::max();
    std::uint64_t due_id = 0;
    for (const auto& [id, entry] : entries_) {
      if (entry.next_due < next) {
        next = entry.next_due;
        due_id = id;
      }
    }
    if (due_id == 0 || next > std::chrono::steady_clock::now()) {
      if (due_id == 0) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, next);
      }
      continue;
    }
    Entry& entry = entries_.at(due_id);
    entry.next_due = std::chrono::steady_clock::now() + entry.interval;
    auto checker = entry.checker;
    const std::string key = entry.key;
    const Token token = entry.token;
    auto lost = entry.lost;
    renewing_id_ = due_id;
    // The store call happens unlocked: a slow store must not block add/remove.
    lock.unlock();
    Status renewed = checker->extend(key, token);
    lock.lock();
    renewing_id_ = 0;
    renewal_done_.notify_all();
    if (!renewed && renewed.error().code() == ErrorCode::kLeaseLost) {
      lost->store(true, std::memory_order_release);
      entries_.erase(due_id);
    }
    // Other errors (store briefly down): keep trying at the next interval;
    // the lease is long enough to survive a missed beat or two.
  }
}

}  // namespace idem::detail
