// `idem webhook-demo`: POST /payments behind the Idempotency-Key middleware.
//
//   POST /payments       {"amount": 1250, "currency": "EUR"} + Idempotency-Key
//                        -> 201 {"id": "pay_...", "amount": 1250, "currency": "EUR"}
//   GET  /payments/{id}  the payment
//   GET  /stats          {"payments_created": N, "handler_executions": M}
//   GET  /metrics        Prometheus text: idem_* and idem_http_requests_total
//
// One log line per request on stdout (logfmt): method, path, key, status,
// replayed.
#include "webhook_demo.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "common.h"
#include "idem/core/checker.h"
#include "idem/core/metrics.h"
#include "idem/integrations/http.h"

namespace idem::cli {
namespace {

using Json = nlohmann::json;

struct Payment {
  std::string id;
  std::int64_t amount = 0;
  std::string currency;
};

// The service's own state: what a real one keeps in its database.
class Payments {
 public:
  explicit Payments(std::chrono::milliseconds delay) : delay_(delay) {}

  // validate() runs before the key is claimed: a rejected request leaves the
  // key unused.
  static std::optional<http::Problem> validate(const httplib::Request& request) {
    const Json body = Json::parse(request.body, nullptr, false);
    if (body.is_discarded()) return http::invalid_request("the body is not valid JSON");
    if (!body.is_object()) return http::invalid_request("the body must be a JSON object");
    for (const auto& [name, value] : body.items()) {
      if (name != "amount" && name != "currency" && name != "simulate") {
        return http::invalid_request("unknown field '" + name + "'");
      }
    }
    auto amount = body.find("amount");
    if (amount == body.end() || !amount->is_number_integer() ||
        (amount->is_number_unsigned() ? amount->get<std::uint64_t>() == 0 : amount->get<std::int64_t>() <= 0)) {
      return http::invalid_request("'amount' must be a positive integer (minor units, e.g. 1250 for 12.50)");
    }
    if (amount->is_number_unsigned() && amount->get<std::uint64_t>() > std::uint64_t{INT64_MAX}) {
      return http::invalid_request("'amount' is too large");
    }
    auto currency = body.find("currency");
    if (currency == body.end() || !currency->is_string() || currency->get_ref<const std::string&>().size() != 3 ||
        !std::all_of(currency->get_ref<const std::string&>().begin(), currency->get_ref<const std::string&>().end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return http::invalid_request("'currency' must be three upper-case letters, e.g. \"EUR\"");
    }
    auto simulate = body.find("simulate");
    if (simulate != body.end() && (!simulate->is_string() || *simulate != "unavailable_once")) {
      return http::invalid_request("'simulate' may only be \"unavailable_once\"");
    }
    return std::nullopt;
  }

  void create(const httplib::Request& request, httplib::Response& response) {
    executions_.fetch_add(1);
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    const Json body = Json::parse(request.body);  // validate() accepted it
    if (body.contains("simulate")) {
      const std::string key = http::parse_idempotency_key(request.get_header_value("Idempotency-Key")).value();
      std::lock_guard lock(mutex_);
      if (simulated_outage_.insert(key).second) {
        http::write_problem(response,
                            {.status = 503,
                             .type = "tag:idem.dev,2025:problem:simulated-outage",
                             .title = "Payment provider unavailable (simulated)",
                             .detail = "The first execution for this key fails on purpose; retry with the same key.",
                             .extensions = {}});
        response.set_header("Retry-After", "1");
        return;
      }
    }
    Payment payment{new_id(), body["amount"].get<std::int64_t>(), body["currency"].get<std::string>()};
    const Json out{{"id", payment.id}, {"amount", payment.amount}, {"currency", payment.currency}};
    {
      std::lock_guard lock(mutex_);
      payments_.emplace(payment.id, payment);
    }
    created_.fetch_add(1);
    response.status = 201;
    response.set_header("Location", "/payments/" + payment.id);
    response.set_content(out.dump(), "application/json");
  }

  void get(const httplib::Request& request, httplib::Response& response) const {
    std::lock_guard lock(mutex_);
    auto it = payments_.find(request.matches[1].str());
    if (it == payments_.end()) {
      http::write_problem(response, {.status = 404,
                                     .type = "about:blank",
                                     .title = "Not Found",
                                     .detail = "no payment with this id",
                                     .extensions = {}});
      return;
    }
    const Json out{{"id", it->second.id}, {"amount", it->second.amount}, {"currency", it->second.currency}};
    response.set_content(out.dump(), "application/json");
  }

  std::string stats() const {
    return Json{{"payments_created", created_.load()}, {"handler_executions", executions_.load()}}.dump();
  }

 private:
  std::string new_id() {
    std::lock_guard lock(mutex_);
    char id[21];
    std::snprintf(id, sizeof id, "pay_%016llx", static_cast<unsigned long long>(random_()));
    return id;
  }

  std::chrono::milliseconds delay_;
  std::atomic<std::uint64_t> executions_{0};
  std::atomic<std::uint64_t> created_{0};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Payment> payments_;
  std::set<std::string> simulated_outage_;
  std::mt19937_64 random_{std::random_device{}()};
};

// Debian's cpp-httplib 0.11 listens with a backlog of 5 (a compile-time
// constant), so a burst of new connections overflows the accept queue and
// some are reset. listen() on a listening socket only changes its backlog.
class Server : public httplib::Server {
 public:
  void raise_backlog(int backlog) { ::listen(svr_sock_.load(), backlog); }
};

// A logfmt value: quoted, with quotes, backslashes and control bytes escaped.
std::string logfmt_value(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", byte);
      out += hex;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void log_request(const httplib::Request& request, const httplib::Response& response) {
  std::string line = "method=" + request.method + " path=" + logfmt_value(request.path);
  if (request.has_header("Idempotency-Key")) {
    // The key as the middleware reads it ("abc" and abc are the same key).
    const std::string raw = request.get_header_value("Idempotency-Key");
    auto key = http::parse_idempotency_key(raw, 0);
    line += " key=" + logfmt_value(key ? *key : raw);
  } else {
    line += " key=-";
  }
  line += " status=" + std::to_string(response.status);
  line += std::string(" replayed=") + (response.has_header(std::string(http::kReplayedHeader)) ? "true" : "false");
  line += '\n';
  // One write per line: lines of concurrent requests never interleave.
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

std::pair<std::string, int> parse_listen(const std::string& listen) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    throw CliError(kExitUsage, "--listen must be HOST:PORT, got '" + listen + "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) throw CliError(kExitUsage, "--listen: bad port in '" + listen + "'");
  return {host, port};
}

}  // namespace

int run_webhook_demo(const WebhookDemoOptions& options) {
  const auto [host, port] = parse_listen(options.listen);
  const auto ttl = parse_duration(options.ttl);
  if (ttl.count() <= 0) throw CliError(kExitUsage, "--ttl must be positive");

  // SIGINT/SIGTERM are taken by a watcher thread; block them before any other
  // thread exists so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  CommonOptions common;
  common.store_url = options.store_url;
  auto store = open_store_or_throw(common);
  auto metrics = std::make_shared<MetricsRegistry>();
  auto checker = std::make_shared<IdempotencyChecker>(
      store, CheckerOptions{.ttl = ttl,
                            .outage_policy = options.fail_open ? OutagePolicy::kFailOpen : OutagePolicy::kFailClosed,
                            .observer = metrics});
  http::IdempotencyMiddleware idempotency(checker, {.wait_for_in_progress = parse_duration(options.wait)});
  Payments payments(std::chrono::milliseconds(options.handler_delay_ms));

  Server server;
  const auto threads = static_cast<std::size_t>(options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR only: httplib's default SO_REUSEPORT would let a second demo
  // bind the same port and take half of the requests.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_logger(log_request);
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(100);
  idempotency.Post(
      server, "/payments",
      [&payments](const httplib::Request& request, httplib::Response& response) { payments.create(request, response); },
      {.validate = &Payments::validate});
  server.Get("/payments/([A-Za-z0-9_]+)", [&payments](const httplib::Request& request, httplib::Response& response) {
    payments.get(request, response);
  });
  server.Get("/stats", [&payments](const httplib::Request&, httplib::Response& response) {
    response.set_content(payments.stats(), "application/json");
  });
  server.Get("/metrics", [&metrics, &idempotency](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics->render() + idempotency.render_metrics(), std::string(MetricsRegistry::kContentType));
  });

  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) throw CliError(kExitError, "cannot listen on " + options.listen);
  server.raise_backlog(SOMAXCONN);

  std::atomic<bool> signalled{false};
  std::thread watcher([&server, &signalled, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    signalled.store(true);
    server.stop();
  });
  std::printf("idem webhook-demo: listening on http://%s:%d (store %s, ttl %s)\n", host.c_str(), bound,
              std::string(store->kind()).c_str(), format_duration(ttl).c_str());
  std::fflush(stdout);
  const bool clean = server.listen_after_bind();
  // Wake the watcher if the server ended by itself.
  if (!signalled.load()) pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::printf("idem webhook-demo: stopped; %s\n", payments.stats().c_str());
  return clean ? kExitOk : kExitError;
}

}  // namespace idem::cli
