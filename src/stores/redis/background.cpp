// Threads for the control plane's blocking work; see background.h.
#include "stores/redis/background.h"

#include <utility>

namespace idem::redis_detail {

void Background::reap_locked() {
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    if (it->finished) {
      it->thread.join();  // already returned: immediate
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Background::run(std::function<void()> task) {
  std::lock_guard lock(mutex_);
  if (closed_) return false;
  reap_locked();
  tasks_.emplace_back();
  Task* slot = &tasks_.back();
  slot->thread = std::thread([this, slot, task = std::move(task)]() mutable {
    task();
    task = nullptr;  // release captures before reporting done
    std::lock_guard done_lock(mutex_);
    slot->finished = true;
    idle_.notify_all();
  });
  return true;
}

void Background::join() {
  std::unique_lock lock(mutex_);
  closed_ = true;
  idle_.wait(lock, [this] {
    for (const Task& t : tasks_) {
      if (!t.finished) return false;
    }
    return true;
  });
  reap_locked();
}

}  // namespace idem::redis_detail
