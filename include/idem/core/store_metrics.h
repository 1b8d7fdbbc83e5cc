/// @file idem/core/store_metrics.h
/// @brief Store-level gauges: what only a look at the store can show.
///
/// A worker that dies in the middle of a handler leaves its record
/// PROCESSING, and no live process will ever report it, so no counter sees
/// it. snapshot_store() reads the store (stats() plus a scan of the PROCESSING
/// records) and StoreSnapshotPoller does so at an interval and hands each
/// snapshot to a MetricsRegistry, which exports it as the idem_records,
/// idem_processing_* and idem_store_snapshot_timestamp_seconds gauges.
///
/// @code
/// auto metrics = std::make_shared<idem::MetricsRegistry>();
/// idem::StoreSnapshotPoller poller(store, metrics, {.interval = std::chrono::seconds(30)});
/// @endcode
///
/// Run one poller per store, not one per worker: on Redis both calls walk the
/// keyspace with SCAN. `idem stats --metrics-listen HOST:PORT` is such a
/// poller, ready to be scraped.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "idem/core/clock.h"
#include "idem/core/error.h"
#include "idem/core/metrics.h"
#include "idem/core/store.h"

namespace idem {

/// Options of snapshot_store().
struct SnapshotOptions {
  /// Most PROCESSING records examined for expired leases; beyond it, the
  /// lease_expired figures are lower bounds. 0 means no limit.
  std::size_t max_processing_scanned = 10'000;
  /// Records per scan page.
  std::size_t page_size = 500;
  /// The clock leases are compared with. Null: the system clock. Give the
  /// store's own clock when it has one (tests with a ManualClock).
  std::shared_ptr<Clock> clock{};
};

/// Reads counts by status and the oldest PROCESSING record from
/// `store.stats()`, then pages through the PROCESSING records to count those
/// whose lease has run out.
///
/// @param store the store to look at.
/// @param options scan limits and the clock.
/// @return the snapshot, or the store's error.
Result<StoreSnapshot> snapshot_store(Store& store, const SnapshotOptions& options = {});

/// Options of StoreSnapshotPoller.
struct StoreSnapshotPollerOptions {
  /// Time between two snapshots; must be positive.
  std::chrono::milliseconds interval{30'000};
  /// Value of the `store` label; empty: `store.kind()`.
  std::string store_label{};
  /// Passed to snapshot_store().
  SnapshotOptions snapshot{};
  /// Called on the poller's thread when a snapshot fails (the gauges keep
  /// their last values and idem_store_snapshot_timestamp_seconds stops
  /// moving, which is what an alert should watch). May be empty.
  std::function<void(const Error&)> on_error{};
};

/// Runs snapshot_store() on its own thread, at once and then every interval,
/// and exports each result with MetricsRegistry::set_store_snapshot().
///
/// Destroying it stops the thread, after a snapshot in progress finishes.
///
/// @code
/// idem::StoreSnapshotPoller poller(store, metrics, {.interval = std::chrono::seconds(30)});
/// @endcode
class StoreSnapshotPoller {
 public:
  /// Starts polling. Throws IdemError (kInvalidArgument) for a null store or
  /// registry, or an interval that is not positive.
  StoreSnapshotPoller(std::shared_ptr<Store> store, std::shared_ptr<MetricsRegistry> registry,
                      StoreSnapshotPollerOptions options = {});
  /// Stops the thread and waits for it.
  ~StoreSnapshotPoller();
  StoreSnapshotPoller(const StoreSnapshotPoller&) = delete;
  StoreSnapshotPoller& operator=(const StoreSnapshotPoller&) = delete;

  /// Snapshots exported so far.
  std::uint64_t snapshots() const noexcept;
  /// Snapshots that failed so far.
  std::uint64_t failures() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem
