// `idem stats`: counts by status, the oldest in-flight record, store size.
// `idem stats --health`: a probe (exit 0 healthy, 3 unhealthy).
// `idem stats --metrics-listen HOST:PORT`: an exporter of the store-level
// gauges (records by status, stuck PROCESSING records) for Prometheus.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common.h"
#include "idem/core/checker.h"
#include "idem/core/store_metrics.h"
#include "metrics_listen.h"

namespace idem::cli {
namespace {

struct StatsOptions {
  CommonOptions common;
  bool health = false;
  std::string metrics_listen;
  std::string interval = "30s";
};

// Runs until SIGINT/SIGTERM. One exporter per store is enough: on Redis a
// snapshot walks the keyspace, which every worker doing it would multiply.
int run_exporter(const StatsOptions& options) {
  const auto interval = parse_duration(options.interval);
  if (interval.count() <= 0) throw CliError(kExitUsage, "--interval must be positive");
  // Like every inspection: exporting zeros from a store created by a typo
  // would hide the real one.
  auto store = open_store_or_throw(options.common, Access::kInspect);
  warn_if_process_local(*store, options.common);
  auto metrics = std::make_shared<MetricsRegistry>(MetricsOptions{.store = std::string(store->kind())});
  // The first snapshot is taken here, so that a store that cannot be read
  // fails the command instead of serving an empty page.
  auto first = snapshot_store(*store);
  if (!first) throw CliError(kExitError, "cannot read store statistics: " + first.error().to_string());
  metrics->set_store_snapshot(store->kind(), *first);
  metrics->set_circuit_state(store->kind(), store->circuit_state());
  MetricsListener listener(metrics, options.metrics_listen);
  StoreSnapshotPoller poller(store, metrics, {.interval = interval, .on_error = [](const Error& error) {
                                                std::fprintf(stderr, "idem: warning: store snapshot failed: %s\n",
                                                             error.to_string().c_str());
                                              }});
  wait_for_stop_signal(std::chrono::milliseconds(-1));
  return kExitOk;
}

int run_health(const StatsOptions& options) {
  const std::string url = effective_store_url(options.common);
  IdempotencyChecker::Health health;
  auto store = open_store(url, {.create_if_missing = false});  // a probe creates nothing
  if (store) {
    health = IdempotencyChecker(std::move(*store)).health();
  } else {
    // A store that cannot even be opened is the unhealthiest of all; a probe
    // wants exit code 3 for it, not a generic error.
    health.reachable = false;
    health.detail = store.error().to_string();
  }
  const double rtt_ms = static_cast<double>(health.round_trip.count()) / 1000.0;
  if (options.common.json) {
    nlohmann::json out{{"healthy", health.reachable},
                       {"store", redact_url(url)},
                       {"store_kind", health.store_kind},
                       {"round_trip_us", health.round_trip.count()},
                       {"detail", health.detail}};
    std::cout << out.dump() << '\n';
  } else if (health.reachable) {
    std::printf("healthy: %s store answered in %.3f ms\n", health.store_kind.c_str(), rtt_ms);
  } else {
    std::printf("unhealthy: %s\n", health.detail.c_str());
  }
  if (!health.reachable && !options.common.json) {
    std::fprintf(stderr, "idem: error: store %s is unhealthy: %s\n", redact_url(url).c_str(), health.detail.c_str());
  }
  return health.reachable ? kExitOk : kExitUnhealthy;
}

int run_stats(const StatsOptions& options) {
  if (options.health) return run_health(options);
  if (!options.metrics_listen.empty()) return run_exporter(options);
  auto store = open_store_or_throw(options.common, Access::kInspect);
  warn_if_process_local(*store, options.common);
  auto stats = store->stats();
  if (!stats) throw CliError(kExitError, "cannot read store statistics: " + stats.error().to_string());
  const Timestamp t = now();
  const std::uint64_t total = stats->processing + stats->completed + stats->failed;
  const std::string url = redact_url(effective_store_url(options.common));
  if (options.common.json) {
    nlohmann::json out{{"store", url},
                       {"store_kind", std::string(store->kind())},
                       {"processing", stats->processing},
                       {"completed", stats->completed},
                       {"failed", stats->failed},
                       {"total", total},
                       {"bytes", stats->bytes ? nlohmann::json(*stats->bytes) : nlohmann::json(nullptr)}};
    out["oldest_processing"] =
        stats->oldest_processing ? record_to_json(*stats->oldest_processing, t) : nlohmann::json(nullptr);
    std::cout << out.dump() << '\n';
    return kExitOk;
  }
  std::printf("store        %s (%.*s)\n", url.c_str(), static_cast<int>(store->kind().size()), store->kind().data());
  std::printf("processing   %llu\n", static_cast<unsigned long long>(stats->processing));
  std::printf("completed    %llu\n", static_cast<unsigned long long>(stats->completed));
  std::printf("failed       %llu\n", static_cast<unsigned long long>(stats->failed));
  std::printf("total        %llu\n", static_cast<unsigned long long>(total));
  if (stats->oldest_processing) {
    const IdempotencyRecord& r = *stats->oldest_processing;
    std::printf("oldest in-flight  %s (first seen %s ago, attempt %u, lease %s)\n", r.idempotency_key.c_str(),
                format_duration(t - r.first_seen_at).c_str(), r.attempt, lease_summary(r, t).c_str());
  } else {
    std::printf("oldest in-flight  -\n");
  }
  if (stats->bytes) {
    std::printf("size         %llu bytes\n", static_cast<unsigned long long>(*stats->bytes));
  } else {
    std::printf("size         unknown\n");
  }
  return kExitOk;
}

}  // namespace

void add_stats_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<StatsOptions>();
  CLI::App* command = app.add_subcommand("stats", "Counts by status, oldest in-flight record, store size");
  add_common_options(*command, options->common);
  command->add_flag("--health", options->health,
                    "Only check that the store answers: exit 0 when healthy, 3 when not (for probes)");
  command->add_option("--metrics-listen", options->metrics_listen,
                      "Run as a Prometheus exporter of the store-level gauges on http://HOST:PORT/metrics "
                      "until SIGTERM (e.g. 127.0.0.1:9465)");
  command
      ->add_option("--interval", options->interval,
                   "With --metrics-listen: time between two store snapshots (default 30s)")
      ->check(validate_duration);
  command->callback([options, &action] { action = [options] { return run_stats(*options); }; });
}

}  // namespace idem::cli
