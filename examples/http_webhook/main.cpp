// A webhook receiver that ships each order once, however often the sender
// delivers the webhook. Senders that follow the Standard Webhooks spec put a
// stable id in the `webhook-id` header and retry with the same id; the
// middleware uses it as the idempotency key.
//
//   ./example_http_webhook --store sqlite:///tmp/webhooks.db --port 8080
//   curl -i localhost:8080/webhooks/orders -H 'webhook-id: msg_1' -H 'Content-Type: application/json'
//        -d '{"type":"order.paid","order_id":"ord_42","delivery_attempt":1}'    (one line)
//
// With --self-test it starts on a free port, delivers the same webhook three
// times plus a forged one, and exits non-zero unless the order shipped once.
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "idem/idem.h"
#include "idem/integrations/http.h"

namespace {

using Json = nlohmann::json;

// Debian's cpp-httplib 0.11 listens with a backlog of 5, too small for bursts
// of connections; listen() again on the bound socket raises it.
class Server : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_.load(), SOMAXCONN); }
};

std::atomic<int> shipped{0};

// Runs before the key is claimed: a malformed delivery is answered 400 and
// its webhook-id stays unused.
std::optional<idem::http::Problem> validate(const httplib::Request& request) {
  const Json body = Json::parse(request.body, nullptr, false);
  if (!body.is_object()) return idem::http::invalid_request("the body must be a JSON object");
  if (body.value("type", "") != "order.paid") return idem::http::invalid_request("'type' must be \"order.paid\"");
  if (!body.contains("order_id") || !body["order_id"].is_string()) {
    return idem::http::invalid_request("'order_id' must be a string");
  }
  return std::nullopt;
}

// The side effect that must happen once. A 5xx (or an exception) here is not
// stored, so the sender's next delivery runs it again.
void ship_order(const httplib::Request& request, httplib::Response& response) {
  const Json body = Json::parse(request.body);
  const int count = ++shipped;
  std::printf("shipping order %s (shipments so far: %d)\n", body["order_id"].get<std::string>().c_str(), count);
  response.set_content(Json{{"shipped", body["order_id"]}}.dump(), "application/json");
}

int self_test(int port) {
  httplib::Client client("127.0.0.1", port);
  const httplib::Headers id{{"webhook-id", "msg_2Lh9"}};
  int failures = 0;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    // Senders count their attempts in the body; the fingerprint ignores it.
    const std::string body =
        R"({"type":"order.paid","order_id":"ord_42","delivery_attempt":)" + std::to_string(attempt) + "}";
    auto r = client.Post("/webhooks/orders", id, body, "application/json");
    if (!r) return 1;
    std::printf("delivery %d -> %d%s %s\n", attempt, r->status,
                r->has_header("Idempotent-Replayed") ? " (replayed)" : "", r->body.c_str());
    failures += r->status == 200 ? 0 : 1;
  }
  // Same id, another order: a forgery or a sender bug, refused with 422.
  auto forged = client.Post("/webhooks/orders", id, R"({"type":"order.paid","order_id":"ord_99"})", "application/json");
  std::printf("same id, other order -> %d %s\n", forged ? forged->status : 0, forged ? forged->body.c_str() : "");
  failures += forged && forged->status == 422 ? 0 : 1;
  std::printf("shipments: %d\n", shipped.load());
  return failures == 0 && shipped.load() == 1 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string store_url = "memory://";
  int port = 8080;
  bool test = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--store" && i + 1 < argc) {
      store_url = argv[++i];
    } else if (arg == "--port" && i + 1 < argc) {
      port = std::stoi(argv[++i]);
    } else if (arg == "--self-test") {
      test = true;
    } else {
      std::fprintf(stderr, "usage: %s [--store URL] [--port N] [--self-test]\n", argv[0]);
      return 2;
    }
  }

  auto checker = idem::IdempotencyChecker::from_url(store_url, {.ttl = std::chrono::hours(72)});
  if (!checker) {
    std::fprintf(stderr, "cannot open store: %s\n", checker.error().to_string().c_str());
    return 1;
  }
  idem::http::IdempotencyMiddleware idempotency(*checker, {.header = "webhook-id", .scope = "webhooks"});

  Server server;
  server.set_tcp_nodelay(true);
  idempotency.Post(server, "/webhooks/orders", ship_order,
                   {.fingerprint = {.ignore_json_fields = {"/delivery_attempt"}}, .validate = validate});

  const int bound = test ? server.bind_to_any_port("127.0.0.1") : (server.bind_to_port("0.0.0.0", port) ? port : -1);
  if (bound <= 0) {
    std::fprintf(stderr, "cannot listen on port %d\n", port);
    return 1;
  }
  server.raise_backlog();
  if (!test) {
    std::printf("receiving webhooks on http://0.0.0.0:%d/webhooks/orders\n", bound);
    return server.listen_after_bind() ? 0 : 1;
  }
  std::thread thread([&server] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const int rc = self_test(bound);
  server.stop();
  thread.join();
  return rc;
}
