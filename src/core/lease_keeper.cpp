#include "core/lease_keeper.h"

#include <vector>

namespace idem::detail {

struct LeaseKeeper::Core {
  explicit Core(std::chrono::milliseconds every) : interval(every) {}

  const std::chrono::milliseconds interval;
  std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable renewal_done;
  // Guarded by mutex:
  LeaseTicket* head = nullptr;  // the earliest deadline
  LeaseTicket* tail = nullptr;
  std::multimap<Clock::time_point, std::function<void()>> timers;
  // When the thread will look again on its own; min() while it is awake or
  // not started (it will look at everything before it sleeps).
  Clock::time_point planned_wake = Clock::time_point::min();
  std::size_t removers_waiting = 0;
  bool stopping = false;
  std::thread thread;  // started by the first add() or schedule()

  void append(LeaseTicket& t) noexcept {
    t.prev = tail;
    t.next = nullptr;
    if (tail != nullptr) {
      tail->next = &t;
    } else {
      head = &t;
    }
    tail = &t;
    t.linked = true;
  }

  void unlink(LeaseTicket& t) noexcept {
    if (!t.linked) return;
    if (t.prev != nullptr) {
      t.prev->next = t.next;
    } else {
      head = t.next;
    }
    if (t.next != nullptr) {
      t.next->prev = t.prev;
    } else {
      tail = t.prev;
    }
    t.prev = t.next = nullptr;
    t.linked = false;
  }
};

LeaseKeeper::LeaseKeeper(std::chrono::milliseconds interval)
    : core_(std::make_shared<Core>(std::max(interval, std::chrono::milliseconds(1)))) {}

LeaseKeeper::~LeaseKeeper() {
  std::thread thread;
  {
    std::lock_guard lock(core_->mutex);
    core_->stopping = true;
    thread = std::move(core_->thread);
  }
  core_->wake.notify_all();
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    thread.detach();  // it holds the Core and leaves its loop on `stopping`
  } else {
    thread.join();
  }
}

void LeaseKeeper::add(LeaseTicket& ticket, Clock::time_point now) {
  Core& c = *core_;
  bool signal = false;
  {
    std::lock_guard lock(c.mutex);
    ticket.due = now + c.interval;
    // Readings taken just before the lock may come in a hair out of order;
    // keep the list sorted rather than trust them.
    if (c.tail != nullptr && c.tail->due > ticket.due) ticket.due = c.tail->due;
    c.append(ticket);
    if (!c.thread.joinable() && !c.stopping) c.thread = std::thread([core = core_] { run(core); });
    signal = ticket.due < c.planned_wake;
  }
  if (signal) c.wake.notify_one();
}

void LeaseKeeper::remove(LeaseTicket& ticket) {
  Core& c = *core_;
  std::unique_lock lock(c.mutex);
  c.unlink(ticket);
  if (ticket.renewing) {
    ++c.removers_waiting;
    c.renewal_done.wait(lock, [&] { return !ticket.renewing; });
    --c.removers_waiting;
  }
}

void LeaseKeeper::remove_then(LeaseTicket& ticket, std::function<void()> then) {
  Core& c = *core_;
  {
    std::lock_guard lock(c.mutex);
    c.unlink(ticket);
    if (ticket.renewing) {
      ticket.after_renewal = std::move(then);
      return;
    }
  }
  then();
}

void LeaseKeeper::schedule(Clock::time_point when, std::function<void()> task) {
  Core& c = *core_;
  bool signal = false;
  {
    std::lock_guard lock(c.mutex);
    c.timers.emplace(when, std::move(task));
    if (!c.thread.joinable() && !c.stopping) c.thread = std::thread([core = core_] { run(core); });
    signal = when < c.planned_wake;
  }
  if (signal) c.wake.notify_one();
}

void LeaseKeeper::renewed(const std::shared_ptr<Core>& core, LeaseTicket& ticket, const Status& status) {
  Core& c = *core;
  std::function<void()> then;
  bool notify = false;
  {
    std::lock_guard lock(c.mutex);
    ticket.renewing = false;
    if (!status && status.error().code() == ErrorCode::kLeaseLost) {
      ticket.lost.store(true, std::memory_order_release);
      c.unlink(ticket);
    }
    // Other errors (store briefly down): the ticket stays queued and is
    // tried again an interval later; the lease outlives a missed beat or two.
    then = std::move(ticket.after_renewal);
    ticket.after_renewal = nullptr;
    notify = c.removers_waiting > 0;
  }
  // `ticket` may be gone from here on: its remover was waiting for this.
  if (notify) c.renewal_done.notify_all();
  if (then) then();
}

void LeaseKeeper::run(const std::shared_ptr<Core>& core) {
  Core& c = *core;
  std::vector<LeaseTicket*> due;
  std::vector<std::function<void()>> tasks;
  std::unique_lock lock(c.mutex);
  for (;;) {
    const Clock::time_point now = Clock::now();
    while (!c.timers.empty() && (c.stopping || c.timers.begin()->first <= now)) {
      tasks.push_back(std::move(c.timers.begin()->second));
      c.timers.erase(c.timers.begin());
    }
    while (!c.stopping && c.head != nullptr && c.head->due <= now) {
      LeaseTicket& t = *c.head;
      c.unlink(t);
      t.due = now + c.interval;
      t.renewing = true;
      c.append(t);
      due.push_back(&t);
    }
    if (tasks.empty() && due.empty()) {
      if (c.stopping) return;
      // Idle, the thread looks again an interval from now (so that leases
      // registered meanwhile, due later than that, need not wake it), but
      // not more than ten times a second when the interval is tiny.
      Clock::time_point next = now + std::max<Clock::duration>(c.interval, std::chrono::milliseconds(100));
      if (c.head != nullptr) next = std::min(next, c.head->due);
      if (!c.timers.empty()) next = std::min(next, c.timers.begin()->first);
      c.planned_wake = next;
      c.wake.wait_until(lock, next);
      c.planned_wake = Clock::time_point::min();
      continue;
    }
    // Store calls and tasks run unlocked: a slow store must not block the
    // registrations on every event's path.
    lock.unlock();
    for (auto& task : tasks) {
      try {
        task();
      } catch (...) {  // NOLINT(bugprone-empty-catch): a task's failure is its own to report
      }
    }
    tasks.clear();
    for (LeaseTicket* t : due) {
      // renewing = true keeps `t` alive until renewed() has run.
      t->checker->extend_async(t->key, t->token, [core, t](const Status& status) { renewed(core, *t, status); });
    }
    due.clear();
    lock.lock();
  }
}

}  // namespace idem::detail
