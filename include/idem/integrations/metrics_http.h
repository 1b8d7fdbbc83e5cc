/// @file idem/integrations/metrics_http.h
/// @brief A Prometheus /metrics endpoint for a MetricsRegistry (component
/// idem::metrics_http).
///
/// Serves a MetricsRegistry's Prometheus text on GET /metrics with
/// cpp-httplib (component idem::metrics_http).
///
/// @code
/// auto metrics = std::make_shared<idem::MetricsRegistry>();
/// auto server = idem::MetricsServer::start(metrics, {.host = "0.0.0.0", .port = 9464}).value();
/// // ... scrape http://host:9464/metrics; the server stops when `server` dies.
/// @endcode
///
/// A service that already runs a httplib::Server adds the route instead:
///
/// @code
/// idem::add_metrics_endpoint(my_server, metrics);
/// @endcode
#pragma once

#include <memory>
#include <string>

#include "idem/core/error.h"
#include "idem/core/metrics.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace idem {

/// Options of MetricsServer::start().
struct MetricsServerOptions {
  /// Interface to listen on. The loopback default keeps metrics private;
  /// "0.0.0.0" exposes them to the network.
  std::string host = "127.0.0.1";
  /// TCP port. 0 picks a free one (read it back with port()).
  int port = 0;
  /// The URL path answered; must start with '/'.
  std::string path = "/metrics";
};

/// MetricsServer runs a small HTTP server on its own thread. Move-only by
/// pointer; destroying it stops the server and joins the thread.
class MetricsServer {
 public:
  /// Binds and starts serving. kUnavailable when the address cannot be bound;
  /// kInvalidConfiguration for a null registry or a path without a leading '/'.
  static Result<std::unique_ptr<MetricsServer>> start(std::shared_ptr<const MetricsRegistry> registry,
                                                      MetricsServerOptions options = {});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// The bound port (the chosen one when options.port was 0).
  int port() const noexcept;
  /// "http://host:port/path", for logs and tests.
  std::string url() const;
  /// Stops serving; idempotent. In-flight scrapes finish first.
  void stop();

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Registers GET `path` on `server`, answering with registry->render() and the
/// text format's Content-Type. The registry is kept alive by the route.
void add_metrics_endpoint(httplib::Server& server, std::shared_ptr<const MetricsRegistry> registry,
                          const std::string& path = "/metrics");

}  // namespace idem
