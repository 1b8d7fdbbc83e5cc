// File: cli/metrics_listen.h
//
// `--metrics-listen HOST:PORT` for the long-running subcommands (bench, and
// stats as an exporter): serve a MetricsRegistry on /metrics for Prometheus,
// and wait for SIGINT/SIGTERM to end cleanly.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "idem/core/metrics.h"

namespace idem::cli {

struct ListenAddress {
  std::string host;
  int port = 0;
};

// Parses "HOST:PORT", "[IPv6]:PORT" or ":PORT" (all interfaces). Port 0 picks
// a free one. Throws CliError(kExitUsage) naming the text.
ListenAddress parse_listen_address(std::string_view text);

// MetricsListener serves `registry` at http://HOST:PORT/metrics until it is
// destroyed, and says where on stderr. Throws CliError when the address
// cannot be bound or the tool was built without HTTP support.
class MetricsListener {
 public:
  MetricsListener(std::shared_ptr<const MetricsRegistry> registry, std::string_view address);
  ~MetricsListener();
  MetricsListener(const MetricsListener&) = delete;
  MetricsListener& operator=(const MetricsListener&) = delete;
  std::string url() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Waits until `duration` passes (forever when it is negative) or SIGINT or
// SIGTERM arrives; true when a signal ended the wait. The signals' default
// action (ending the process at once) is restored afterwards.
bool wait_for_stop_signal(std::chrono::milliseconds duration);

}  // namespace idem::cli
