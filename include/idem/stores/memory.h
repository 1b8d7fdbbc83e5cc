// File: idem/stores/memory.h
//
// MemoryStore keeps records in this process only: for tests and for
// single-process services that accept losing state on restart. It is sharded
// (no global lock on the hot path), expires records lazily and by sweep, and
// can be bounded.
//
//   auto store = idem::MemoryStore::create();            // or open_store("memory://")
//   auto bounded = idem::MemoryStore::create({.max_records = 100'000});
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "idem/core/clock.h"
#include "idem/core/store.h"

namespace idem {

struct MemoryStoreOptions {
  // Number of independently locked shards; rounded up to a power of two.
  std::size_t shards = 64;
  // Upper bound on live records. 0 means unbounded. When full, expired
  // records are dropped first; live ones are never evicted (that would break
  // the once-only promise), so a claim on a full store fails with
  // kResourceExhausted.
  std::size_t max_records = 0;
  std::shared_ptr<Clock> clock = system_clock();
};

class MemoryStore {
 public:
  static std::shared_ptr<Store> create(MemoryStoreOptions options = {});
  // Accepts "memory://" with optional query "?max_records=N&shards=N".
  static Result<std::shared_ptr<Store>> open(std::string_view url);
};

}  // namespace idem
