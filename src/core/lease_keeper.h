// File: src/core/lease_keeper.h
//
// LeaseKeeper renews the leases of running handlers from one background
// thread per processor, so a long handler is not taken over while it is
// alive. One thread for all contexts instead of one per handler keeps the cost
// flat when thousands of handlers are in flight.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "idem/core/checker.h"

namespace idem::detail {

class LeaseKeeper {
 public:
  LeaseKeeper() = default;
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Starts renewing `key` every `interval`. `lost` is set when a renewal
  // finds that another worker took the key over.
  std::uint64_t add(std::shared_ptr<IdempotencyChecker> checker, std::string key, Token token,
                    std::chrono::milliseconds interval, std::shared_ptr<std::atomic<bool>> lost);
  // Stops renewing; after it returns no renewal of this entry is running.
  void remove(std::uint64_t id);

 private:
  struct Entry {
    std::shared_ptr<IdempotencyChecker> checker;
    std::string key;
    Token token = 0;
    std::chrono::milliseconds interval{0};
    std::chrono::steady_clock::time_point next_due;
    std::shared_ptr<std::atomic<bool>> lost;
  };
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable renewal_done_;
  std::map<std::uint64_t, Entry> entries_;  // guarded by mutex_
  std::uint64_t next_id_ = 1;               // guarded by mutex_
  std::uint64_t renewing_id_ = 0;           // guarded by mutex_; 0: none
  bool stopping_ = false;                   // guarded by mutex_
  std::thread thread_;                      // started on first add()
};

}  // namespace idem::detail
