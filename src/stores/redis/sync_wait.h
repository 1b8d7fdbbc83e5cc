// File: src/stores/redis/sync_wait.h
//
// How a synchronous call waits for its asynchronous operation.
//
// SyncWaiter lives on the caller's stack for the duration of one synchronous
// call. Two things make it cheap:
//
//  * A caller alone on an idle connection is granted the connection and does
//    the I/O itself (DirectDriver), on its own thread: no hand-off to the I/O
//    thread and back, so one synchronous caller runs at the speed of a
//    blocking client.
//  * When the I/O thread completes many synchronous callers in one pass over
//    the replies of a read, it wakes them together: the waiters' futex bits
//    collected during the pass are woken with one FUTEX_WAKE_BITSET per 32
//    threads (WakeBatch), instead of one wake-up system call per reply.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace idem::redis_detail {

// DirectDriver is a connection that a synchronous caller may drive itself.
class DirectDriver {
 public:
  // drive() does the I/O of `request` on the calling thread until it is
  // complete (or the connection failed), then hands the connection back.
  virtual void drive(void* request) = 0;
  virtual ~DirectDriver() = default;
};

class WakeBatch;

class SyncWaiter {
 public:
  SyncWaiter() noexcept;
  ~SyncWaiter();
  SyncWaiter(const SyncWaiter&) = delete;
  SyncWaiter& operator=(const SyncWaiter&) = delete;

  // current() is the waiter of the synchronous call running on this thread,
  // or nullptr.
  static SyncWaiter* current() noexcept;

  // has_grant() is true while a grant waits to be driven: a waiter drives one
  // connection at a time, so a second idle connection goes through the loop.
  bool has_grant() const noexcept { return driver_ != nullptr; }

  // grant() lets this waiter's thread drive `request` on `driver` (called by
  // the connection, on the waiter's own thread).
  void grant(DirectDriver* driver, void* request) noexcept {
    driver_ = driver;
    request_ = request;
  }

  // signal() marks the call complete and wakes the waiter, at the end of the
  // current I/O pass when called inside one. Any thread. The waiter may be
  // gone as soon as signal() has stored the flag, so nothing touches it after.
  void signal() noexcept;

  // wait() returns once signal() was called, driving granted requests
  // meanwhile.
  void wait();

 private:
  std::atomic<bool> done_{false};
  std::uint32_t slot_;
  DirectDriver* driver_ = nullptr;
  void* request_ = nullptr;
  SyncWaiter* previous_;
};

// WakeBatch collects the waiters signalled during one pass of the I/O thread.
class WakeBatch {
 public:
  static constexpr std::uint32_t kWords = 32;  // 1024 distinct waiter slots

  // Scope makes `batch` the current batch of this thread.
  class Scope {
   public:
    explicit Scope(WakeBatch& batch) noexcept;
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    WakeBatch* previous_;
  };

  static WakeBatch* current() noexcept;
  void add(std::uint32_t slot) noexcept;
  // flush() wakes everything added since the last flush.
  void flush() noexcept;

 private:
  std::array<std::uint32_t, kWords> bits_{};
  std::uint32_t touched_ = 0;  // bit i: bits_[i] is not empty
};

// wake_slot() wakes the waiter(s) of one slot at once.
void wake_slot(std::uint32_t slot) noexcept;

}  // namespace idem::redis_detail
