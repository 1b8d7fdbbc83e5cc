/// @file idem/stores/memory.h
/// @brief MemoryStore: records in this process only (tests, single-process
/// services).
///
/// MemoryStore keeps records in this process only: for tests and for
/// single-process services that accept losing state on restart. It is sharded
/// (no global lock on the hot path), expires records lazily and by sweep, and
/// can be bounded. Waiters (wait_settled, the wrapper's in-progress wait) are
/// woken at once when the original completes, fails or is removed.
///
/// Every open of a plain `memory://` URL, and every create(), makes a NEW,
/// PRIVATE, EMPTY store: two parts of a program that each open `memory://`
/// do not see each other's records. To share one store inside a process,
/// name it: every open of `memory://orders` returns the same store for as
/// long as anyone holds it (then it and its records are gone). No name is
/// ever shared between processes.
///
/// @code
/// auto store = idem::MemoryStore::create();  // or open_store("memory://")
/// auto bounded = idem::MemoryStore::create({.max_records = 100'000});
/// auto a = idem::open_store("memory://orders").value();
/// auto b = idem::open_store("memory://orders").value();  // a == b: one store
/// @endcode
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>

#include "idem/core/clock.h"
#include "idem/core/store.h"

namespace idem {

/// Options of MemoryStore::create().
struct MemoryStoreOptions {
  /// Number of independently locked shards; rounded up to a power of two.
  std::size_t shards = 64;
  /// Upper bound on live records. 0 means unbounded. When full, expired
  /// records are dropped first; live ones are never evicted (that would break
  /// the once-only promise), so a claim on a full store fails with
  /// kResourceExhausted.
  std::size_t max_records = 0;
  /// The clock leases and TTLs are measured against; a ManualClock in tests.
  std::shared_ptr<Clock> clock = system_clock();
  /// How often wait_settled() re-reads a record on its own. Changes made
  /// through the store wake waiters at once; this only catches a lease that
  /// ran out on a clock that jumps (a ManualClock moved by a test). Clamped
  /// to [1 ms, kMaxLease].
  std::chrono::milliseconds wait_poll_interval{50};
};

/// Factory of in-process stores; the stores themselves are used through the
/// Store interface.
class MemoryStore {
 public:
  /// create() makes a new private store (see the file comment).
  static std::shared_ptr<Store> create(MemoryStoreOptions options = {});
  /// open() accepts "memory://" (a new private store) and "memory://name" (the
  /// process's shared store of that name: letters, digits, '-', '_', '.'),
  /// with optional query "?max_records=N&shards=N". A named store that is
  /// already open must be opened with the same parameters. With
  /// options.create_if_missing = false, a name that is not open fails with
  /// kNotFound. Bad URLs are kInvalidConfiguration.
  static Result<std::shared_ptr<Store>> open(std::string_view url, const OpenOptions& options = {});
};

}  // namespace idem
