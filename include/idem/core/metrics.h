/// @file idem/core/metrics.h
/// @brief MetricsRegistry: Prometheus metrics of everything Idem does.
///
/// MetricsRegistry is an Observer that counts what Idem does and renders it in
/// the Prometheus text exposition format (version 0.0.4). Hand it to the
/// checker and serve render() from your /metrics endpoint (or use
/// idem/integrations/metrics_http.h):
///
/// @code
/// auto metrics = std::make_shared<idem::MetricsRegistry>(idem::MetricsOptions{.store = "redis"});
/// auto checker = idem::IdempotencyChecker::from_url(url, {.observer = metrics}).value();
/// ...
/// std::string body = metrics->render();  // text/plain; version=0.0.4
/// @endcode
///
/// Counting is cheap enough for every event: counters are striped atomics (a
/// thread increments its own cache line, no lock), and a label set is resolved
/// once, then found again through a lock-free snapshot. Only rendering and the
/// first event of a new scope take a lock.
///
/// Families (all prefixed by MetricsOptions::prefix, "idem_" by default):
///
/// @verbatim
///   claims_total{scope,store}                      decided claims
///   new_total / takeovers_total / retries_total    acquired claims, by kind
///   duplicates_total{scope,store,state}            state: completed|in_progress|failed
///   mismatches_total                               key reused with another payload
///   completions_total                              handler results stored
///   failures_total{scope,store,kind}               kind: retryable|terminal|abandoned
///   lease_lost_total                               results refused: a newer owner
///   fail_open_total                                handler ran unprotected (store down)
///   store_errors_total{store,op,code}              failed store calls
///   circuit_breaker_state{store}                   gauge: 0 closed, 1 half-open, 2 open
///   store_call_duration_seconds{store,op}          histogram
///   handler_duration_seconds{scope,store}          histogram
///   handlers_in_flight{store}                      gauge: guarded handlers running now
/// and, once set_store_snapshot() was called for a store (store_metrics.h):
///   records{store,status}                          gauge: live records by status
///   processing_oldest_age_seconds{store}           gauge
///   processing_lease_expired_records{store}        gauge: PROCESSING, lease run out
///   processing_lease_expired_max_seconds{store}    gauge: the longest-expired lease
///   store_snapshot_timestamp_seconds{store}        gauge: when the snapshot was taken
/// @endverbatim
///
/// docs/monitoring.md explains each family, the dashboard and the alerts.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/observer.h"

namespace idem {

/// Options of MetricsRegistry.
struct MetricsOptions {
  /// Value of the `store` label on the outcome counters and the handler
  /// histogram (which the Observer interface reports without a store). Empty:
  /// the kind of the first store call observed ("memory", "sqlite", ...).
  /// Use one registry per store, or set this, when a process has several.
  std::string store{};
  /// Prepended to every metric name. Must match [a-zA-Z_:][a-zA-Z0-9_:]*.
  std::string prefix = "idem_";
  /// Upper bounds (seconds) of the latency histogram buckets, ascending; +Inf
  /// is implied. Empty: the defaults below.
  std::vector<double> store_buckets{};    ///< default 100us .. 10s
  std::vector<double> handler_buckets{};  ///< default 1ms .. 60s
};

/// StoreSnapshot is what a look at the store itself shows, as opposed to what
/// this process saw happen: it includes the records of workers that died, which
/// no live process will ever report. snapshot_store() (store_metrics.h) takes
/// one; set_store_snapshot() exports it.
struct StoreSnapshot {
  std::uint64_t processing = 0;  ///< live PROCESSING records, running or stuck
  std::uint64_t completed = 0;   ///< live COMPLETED records
  std::uint64_t failed = 0;      ///< live FAILED records
  /// Age of the oldest PROCESSING record (since first seen); 0 when none.
  std::chrono::milliseconds oldest_processing_age{0};
  /// PROCESSING records whose lease has run out: their worker died or hung,
  /// and no redelivery has taken them over yet.
  std::uint64_t lease_expired = 0;
  /// How long ago the longest-expired of those leases ran out; 0 when none.
  std::chrono::milliseconds lease_expired_max{0};
  /// When the snapshot was taken (wall clock).
  std::chrono::sys_time<std::chrono::milliseconds> taken_at{};
};

namespace detail {
struct MetricsState;
}  // namespace detail

/// An Observer that counts claims, outcomes, store calls and latencies and
/// renders them for Prometheus (families in the file comment). Thread-safe;
/// one registry per process, or per store (see MetricsOptions::store).
class MetricsRegistry final : public Observer {
 public:
  /// An empty registry. Throws std::invalid_argument for an invalid prefix,
  /// or bucket bounds that are not finite, positive and strictly ascending.
  explicit MetricsRegistry(MetricsOptions options = {});
  ~MetricsRegistry() override;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // --- Observer ---------------------------------------------------------

  void on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                     const Error* error) override;
  void on_claim(const ClaimObservation& observation) override;
  void on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) override;
  void on_fail_open(std::string_view scope, const Error& error) override;
  void on_circuit_state(std::string_view store_kind, CircuitState state) override {
    set_circuit_state(store_kind, state);
  }
  /// The guard opens its "idem.handler" span when it acquires a key and closes
  /// it with the handler's verdict, or when the context is destroyed without
  /// one. That bracket is exactly "a guarded handler is running", so the
  /// registry answers it with a span that counts handlers_in_flight, and the
  /// gauge cannot drift (claims taken through the manual API, which open no
  /// such span, are not counted). Other span names: null (not traced).
  std::unique_ptr<SpanScope> start_span(std::string_view name) override;

  /// set_circuit_state() sets the circuit_breaker_state gauge of `store` (a
  /// store kind or any name the store reports under). Stores with a circuit
  /// breaker call it on every transition.
  void set_circuit_state(std::string_view store, CircuitState state);

  /// set_store_snapshot() replaces the store-level gauges of `store` (records
  /// by status, stuck PROCESSING records) with `snapshot`. Called by
  /// StoreSnapshotPoller, or by your own code after snapshot_store().
  void set_store_snapshot(std::string_view store, const StoreSnapshot& snapshot);

  /// render() returns every family in the Prometheus text format 0.0.4.
  /// Thread-safe; counters keep moving while it runs, so a scrape is a
  /// consistent view of each series but not a snapshot of all of them.
  std::string render() const;

  /// The HTTP Content-Type of render()'s output.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  /// Counter values for tests and dashboards-in-code. `labels` is the series'
  /// label set as rendered, e.g. R"(scope="billing",store="memory")". 0 when
  /// the series does not exist.
  std::uint64_t counter_value(std::string_view name, std::string_view labels) const;

 private:
  std::unique_ptr<detail::MetricsState> state_;
};

/// Escapes a label value for the text format: \ → \\, " → \", newline → \n.
std::string escape_label_value(std::string_view value);

}  // namespace idem
