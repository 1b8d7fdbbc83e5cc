// File: src/core/lease_keeper.h
//
// LeaseKeeper renews the leases of running handlers from one background
// thread per processor, so a long handler is not taken over while it is
// alive, and runs the guard's delayed retries of store writes. One thread for
// all contexts instead of one per handler keeps the cost flat when thousands
// of handlers are in flight.
//
// Registering and releasing a lease is on every event's path, so it is kept
// to a lock, two pointer writes and no allocation, and it never wakes the
// thread:
//  * Every lease of one keeper is renewed at the same interval, so deadlines
//    come in registration order: the leases form a FIFO list (intrusive, the
//    links live in the caller's LeaseTicket), the earliest at the front.
//  * The thread, when idle, plans to wake one interval from now. A lease
//    registered later is due later than that, so nobody needs to wake the
//    thread; only a deadline earlier than its planned wake-up (a retry
//    timer, in practice) signals it.
//  * Renewals go through extend_async(): the keeper thread never waits for a
//    native store's I/O, and one slow renewal does not delay the others.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

#include "idem/core/checker.h"

namespace idem::detail {

// LeaseTicket is one registered lease. Its owner keeps it (and the checker
// and key it points to) alive from add() until remove() returns or
// remove_then() runs its continuation.
struct LeaseTicket {
  const IdempotencyChecker* checker = nullptr;
  std::string_view key{};
  Token token = 0;
  // Set when a renewal found the lease taken over; the owner then skips its
  // own write (it would answer kLeaseLost anyway).
  std::atomic<bool> lost{false};

  // The keeper's, guarded by its mutex.
  LeaseTicket* prev = nullptr;
  LeaseTicket* next = nullptr;
  std::chrono::steady_clock::time_point due{};
  bool linked = false;
  bool renewing = false;                // an extend_async() of this ticket has not answered yet
  std::function<void()> after_renewal;  // remove_then()'s continuation, when it had to wait
};

class LeaseKeeper {
 public:
  using Clock = std::chrono::steady_clock;

  // `interval` is how often every lease of this keeper is renewed.
  explicit LeaseKeeper(std::chrono::milliseconds interval);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // add() starts renewing `ticket` one interval after `now` (a clock reading
  // the caller already has).
  void add(LeaseTicket& ticket, Clock::time_point now);
  // remove() stops renewing; when it returns no renewal of the ticket is
  // running, so no extend lands after the caller's completion. It may wait
  // for a renewal in flight: never call it where that renewal's answer has
  // to be delivered (a native store's I/O thread); use remove_then() there.
  void remove(LeaseTicket& ticket);
  // remove_then() stops renewing without waiting: `then` runs at once on this
  // thread when no renewal is in flight, otherwise on the thread that
  // receives that renewal's answer, right after it.
  void remove_then(LeaseTicket& ticket, std::function<void()> then);

  // schedule() runs `task` on the keeper thread at `when` or soon after
  // (the guard's delayed retries of a store write). The task must not block
  // for long: it delays renewals.
  void schedule(Clock::time_point when, std::function<void()> task);

 private:
  struct Core;
  static void run(const std::shared_ptr<Core>& core);
  static void renewed(const std::shared_ptr<Core>& core, LeaseTicket& ticket, const Status& status);

  // The thread holds the Core too, so that it can finish safely when the
  // keeper is destroyed on the keeper thread itself (the last guard state
  // released from inside a renewal's answer).
  std::shared_ptr<Core> core_;
};

}  // namespace idem::detail
