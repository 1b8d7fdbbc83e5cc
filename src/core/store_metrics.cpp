// snapshot_store() and StoreSnapshotPoller; see idem/core/store_metrics.h.
#include "idem/core/store_metrics.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

namespace idem {

Result<StoreSnapshot> snapshot_store(Store& store, const SnapshotOptions& options) {
  const std::shared_ptr<Clock> clock = options.clock ? options.clock : system_clock();
  Result<StoreStats> stats = store.stats();
  if (!stats) return std::move(stats).error();
  const Timestamp now = clock->now();

  StoreSnapshot snapshot;
  snapshot.taken_at = now;
  snapshot.processing = stats->processing;
  snapshot.completed = stats->completed;
  snapshot.failed = stats->failed;
  if (stats->oldest_processing) {
    snapshot.oldest_processing_age =
        std::max(now - stats->oldest_processing->first_seen_at, std::chrono::milliseconds(0));
  }
  if (stats->processing == 0) return snapshot;

  // stats() names only the oldest PROCESSING record, whose lease may well be
  // alive (a long handler with a heartbeat) while a younger one is stuck, so
  // every PROCESSING record is looked at.
  ScanOptions scan;
  scan.status = ProcessingStatus::kProcessing;
  scan.limit = std::max<std::size_t>(options.page_size, 1);
  std::size_t scanned = 0;
  do {
    Result<ScanPage> page = store.scan(scan);
    if (!page) return std::move(page).error();
    for (const IdempotencyRecord& record : page->records) {
      ++scanned;
      // Scan filters by status, but a store may return a record that moved
      // on between its index and its read.
      if (record.status != ProcessingStatus::kProcessing || record.lease_valid(now)) continue;
      ++snapshot.lease_expired;
      snapshot.lease_expired_max = std::max(snapshot.lease_expired_max, now - record.lease_expires_at);
    }
    scan.cursor = std::move(page->next_cursor);
  } while (!scan.cursor.empty() && (options.max_processing_scanned == 0 || scanned < options.max_processing_scanned));
  return snapshot;
}

struct StoreSnapshotPoller::Impl {
  std::shared_ptr<Store> store;
  std::shared_ptr<MetricsRegistry> registry;
  StoreSnapshotPollerOptions options;
  std::string label;
  std::atomic<std::uint64_t> snapshots{0};
  std::atomic<std::uint64_t> failures{0};
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;

  void poll() {
    Result<StoreSnapshot> snapshot = snapshot_store(*store, options.snapshot);
    if (snapshot) {
      registry->set_store_snapshot(label, *snapshot);
      snapshots.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    failures.fetch_add(1, std::memory_order_relaxed);
    if (options.on_error) options.on_error(snapshot.error());
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      lock.unlock();
      poll();
      lock.lock();
      wake.wait_for(lock, options.interval, [this] { return stopping; });
    }
  }
};

StoreSnapshotPoller::StoreSnapshotPoller(std::shared_ptr<Store> store, std::shared_ptr<MetricsRegistry> registry,
                                         StoreSnapshotPollerOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!store || !registry) {
    throw IdemError(Error(ErrorCode::kInvalidArgument, "StoreSnapshotPoller needs a store and a registry"));
  }
  if (options.interval.count() <= 0) {
    throw IdemError(Error(ErrorCode::kInvalidArgument, "StoreSnapshotPoller: interval must be positive"));
  }
  impl_->label = options.store_label.empty() ? std::string(store->kind()) : options.store_label;
  impl_->store = std::move(store);
  impl_->registry = std::move(registry);
  impl_->options = std::move(options);
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

StoreSnapshotPoller::~StoreSnapshotPoller() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

std::uint64_t StoreSnapshotPoller::snapshots() const noexcept {
  return impl_->snapshots.load(std::memory_order_relaxed);
}
std::uint64_t StoreSnapshotPoller::failures() const noexcept { return impl_->failures.load(std::memory_order_relaxed); }

}  // namespace idem
