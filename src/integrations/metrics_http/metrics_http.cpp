// MetricsServer: cpp-httplib on a background thread.
#include "idem/integrations/metrics_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>
#include <utility>

namespace idem {

struct MetricsServer::Impl {
  MetricsServerOptions options;
  httplib::Server server;
  std::thread thread;
  int port = 0;
};

void add_metrics_endpoint(httplib::Server& server, std::shared_ptr<const MetricsRegistry> registry,
                          const std::string& path) {
  server.Get(path, [registry = std::move(registry)](const httplib::Request& /*request*/, httplib::Response& response) {
    response.set_content(registry->render(), std::string(MetricsRegistry::kContentType).c_str());
  });
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(std::shared_ptr<const MetricsRegistry> registry,
                                                            MetricsServerOptions options) {
  if (!registry) return Error(ErrorCode::kInvalidConfiguration, "metrics server: registry is null");
  if (options.path.empty() || options.path.front() != '/') {
    return Error(ErrorCode::kInvalidConfiguration, "metrics server: path must start with '/'");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  add_metrics_endpoint(impl->server, std::move(registry), impl->options.path);
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the
  // same port and silently receive half the scrapes. Keep SO_REUSEADDR only
  // (fast restarts), so a taken port is an error.
  impl->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const int port = impl->options.port == 0
                       ? impl->server.bind_to_any_port(impl->options.host)
                       : (impl->server.bind_to_port(impl->options.host, impl->options.port) ? impl->options.port : -1);
  if (port <= 0) {
    return Error(ErrorCode::kUnavailable,
                 "metrics server: cannot listen on " + impl->options.host + ":" + std::to_string(impl->options.port));
  }
  impl->port = port;
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  // httplib's stop() does nothing until the accept loop runs, so a server
  // stopped right after start() would never return: wait for the loop.
  while (!impl->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { stop(); }

int MetricsServer::port() const noexcept { return impl_->port; }

std::string MetricsServer::url() const {
  return "http://" + impl_->options.host + ":" + std::to_string(impl_->port) + impl_->options.path;
}

void MetricsServer::stop() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace idem
