#include "metrics_listen.h"

#include <csignal>
#include <cstdio>
#include <thread>

#include "common.h"

#ifdef IDEM_CLI_HAVE_METRICS_HTTP
#include "idem/integrations/metrics_http.h"
#endif

namespace idem::cli {

ListenAddress parse_listen_address(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return CliError(kExitUsage, "invalid --metrics-listen '" + std::string(text) + "': " + why +
                                    " (expected HOST:PORT, e.g. 127.0.0.1:9464)");
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) throw bad("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw bad("an IPv6 address needs brackets");
  }
  int port = 0;
  if (port_text.empty() || port_text.size() > 5) throw bad("the port must be 0-65535");
  for (char c : port_text) {
    if (c < '0' || c > '9') throw bad("the port must be 0-65535");
    port = port * 10 + (c - '0');
  }
  if (port > 65535) throw bad("the port must be 0-65535");
  return ListenAddress{host.empty() ? "0.0.0.0" : std::string(host), port};
}

#ifdef IDEM_CLI_HAVE_METRICS_HTTP
struct MetricsListener::Impl {
  std::unique_ptr<MetricsServer> server;
};

MetricsListener::MetricsListener(std::shared_ptr<const MetricsRegistry> registry, std::string_view address)
    : impl_(std::make_unique<Impl>()) {
  const ListenAddress where = parse_listen_address(address);
  auto server = MetricsServer::start(std::move(registry), {.host = where.host, .port = where.port});
  if (!server) {
    throw CliError(kExitError, "cannot serve metrics on " + std::string(address) + ": " + server.error().to_string());
  }
  impl_->server = std::move(*server);
  // stderr, so that --json output on stdout stays one document.
  std::fprintf(stderr, "idem: serving metrics on %s\n", impl_->server->url().c_str());
  std::fflush(stderr);
}

MetricsListener::~MetricsListener() = default;

std::string MetricsListener::url() const { return impl_->server->url(); }
#else
struct MetricsListener::Impl {};

MetricsListener::MetricsListener(std::shared_ptr<const MetricsRegistry> /*registry*/, std::string_view address) {
  (void)parse_listen_address(address);
  throw CliError(kExitUsage, "this idem was built without HTTP support (IDEM_WITH_HTTP=OFF): no --metrics-listen");
}
MetricsListener::~MetricsListener() = default;
std::string MetricsListener::url() const { return {}; }
#endif

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }
}  // namespace

bool wait_for_stop_signal(std::chrono::milliseconds duration) {
  g_stop_signal = 0;
  auto* previous_int = std::signal(SIGINT, on_stop_signal);
  auto* previous_term = std::signal(SIGTERM, on_stop_signal);
  const auto deadline = std::chrono::steady_clock::now() + duration;
  // Polling a flag (rather than sigwait) keeps this free of any assumption
  // about which threads block which signals; 50 ms is far below a scrape.
  while (g_stop_signal == 0 && (duration.count() < 0 || std::chrono::steady_clock::now() < deadline)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);
  return g_stop_signal != 0;
}

}  // namespace idem::cli
