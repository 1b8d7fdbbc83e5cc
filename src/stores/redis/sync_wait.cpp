// Futex-based waiting for synchronous calls; see sync_wait.h.
#include "stores/redis/sync_wait.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace idem::redis_detail {
namespace {

// The futex words: waiter slot s sleeps on word s / 32 with bit s % 32. A
// wake increments the word (so a waiter about to sleep sees the change and
// re-checks) and wakes the bits of the completed waiters in one call.
std::array<std::atomic<std::uint32_t>, WakeBatch::kWords> g_words{};
std::atomic<std::uint32_t> g_next_slot{0};

thread_local SyncWaiter* t_waiter = nullptr;
thread_local WakeBatch* t_batch = nullptr;

std::uint32_t thread_slot() noexcept {
  thread_local const std::uint32_t slot =
      g_next_slot.fetch_add(1, std::memory_order_relaxed) % (WakeBatch::kWords * 32);
  return slot;
}

std::uint32_t* futex_word(std::uint32_t word) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return reinterpret_cast<std::uint32_t*>(&g_words[word]);
}

void futex_wake(std::uint32_t word, std::uint32_t bits) noexcept {
  g_words[word].fetch_add(1, std::memory_order_release);
  ::syscall(SYS_futex, futex_word(word), FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, nullptr, nullptr, bits);
}

}  // namespace

void wake_slot(std::uint32_t slot) noexcept { futex_wake(slot / 32, 1U << (slot % 32)); }

SyncWaiter::SyncWaiter() noexcept : slot_(thread_slot()), previous_(t_waiter) { t_waiter = this; }

SyncWaiter::~SyncWaiter() { t_waiter = previous_; }

SyncWaiter* SyncWaiter::current() noexcept { return t_waiter; }

void SyncWaiter::signal() noexcept {
  const std::uint32_t slot = slot_;
  const bool self = t_waiter == this;  // completed by its own thread while driving
  done_.store(true, std::memory_order_release);
  // From here on `this` may be gone.
  if (self) return;
  if (WakeBatch* batch = t_batch) {
    batch->add(slot);
  } else {
    wake_slot(slot);
  }
}

void SyncWaiter::wait() {
  const std::uint32_t word = slot_ / 32;
  const std::uint32_t bit = 1U << (slot_ % 32);
  for (;;) {
    if (done_.load(std::memory_order_acquire)) return;
    if (driver_ != nullptr) {
      DirectDriver* driver = driver_;
      void* request = request_;
      driver_ = nullptr;
      request_ = nullptr;
      driver->drive(request);
      continue;
    }
    const std::uint32_t seen = g_words[word].load(std::memory_order_acquire);
    if (done_.load(std::memory_order_acquire)) return;
    ::syscall(SYS_futex, futex_word(word), FUTEX_WAIT_BITSET_PRIVATE, seen, nullptr, nullptr, bit);
  }
}

WakeBatch::Scope::Scope(WakeBatch& batch) noexcept : previous_(t_batch) { t_batch = &batch; }
WakeBatch::Scope::~Scope() { t_batch = previous_; }

WakeBatch* WakeBatch::current() noexcept { return t_batch; }

void WakeBatch::add(std::uint32_t slot) noexcept {
  const std::uint32_t word = slot / 32;
  bits_[word] |= 1U << (slot % 32);
  touched_ |= 1U << word;
}

void WakeBatch::flush() noexcept {
  while (touched_ != 0) {
    const auto word = static_cast<std::uint32_t>(__builtin_ctz(touched_));
    touched_ &= touched_ - 1;
    futex_wake(word, bits_[word]);
    bits_[word] = 0;
  }
}

}  // namespace idem::redis_detail
