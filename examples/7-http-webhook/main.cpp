// Example 7: a webhook endpoint that ships each order once, however often the
// sender delivers the webhook. Senders that follow the Standard Webhooks spec
// put a stable id in the `webhook-id` header and retry with the same id (on
// timeouts and on 5xx answers); the middleware uses it as the idempotency key.
//
//   example_http_webhook [STORE_URL]               deliver webhooks to itself and check
//   example_http_webhook [STORE_URL] --serve 8080  then keep serving on 127.0.0.1:8080
#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/example.h"
#include "idem/integrations/http.h"

namespace {

using Json = nlohmann::json;

// Debian's cpp-httplib 0.11 listens with a backlog of 5, too small for bursts
// of connections; listen() again on the bound socket raises it.
class Server : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_.load(), SOMAXCONN); }
};

// The business side: what must happen once per order.
class Warehouse {
 public:
  // Runs before the webhook-id is claimed: a malformed delivery is answered
  // 400 and its id stays unused.
  static std::optional<idem::http::Problem> validate(const httplib::Request& request) {
    const Json body = Json::parse(request.body, nullptr, false);
    if (!body.is_object()) return idem::http::invalid_request("the body must be a JSON object");
    if (body.value("type", "") != "order.paid") return idem::http::invalid_request("'type' must be \"order.paid\"");
    if (!body.contains("order_id") || !body["order_id"].is_string()) {
      return idem::http::invalid_request("'order_id' must be a string");
    }
    return std::nullopt;
  }

  // A 5xx (or an exception) here is not stored, so the sender's next
  // delivery runs it again.
  void ship(const httplib::Request& request, httplib::Response& response) {
    const std::string order = Json::parse(request.body)["order_id"].get<std::string>();
    if (order == "ord_busy" && busy_once_.exchange(false)) {
      response.status = 503;
      response.set_content("warehouse busy, retry", "text/plain");
      return;
    }
    std::printf("    shipping %s\n", order.c_str());
    {
      std::lock_guard lock(mutex_);
      shipments_.push_back(order);
    }
    response.set_content(Json{{"shipped", order}}.dump(), "application/json");
  }

  std::vector<std::string> shipments() const {
    std::lock_guard lock(mutex_);
    return shipments_;
  }

 private:
  std::atomic<bool> busy_once_{true};
  mutable std::mutex mutex_;
  std::vector<std::string> shipments_;
};

httplib::Result deliver(httplib::Client& client, const std::string& id, const std::string& body) {
  return client.Post("/webhooks/orders", httplib::Headers{{"webhook-id", id}}, body, "application/json");
}

std::string paid(const std::string& order, int attempt) {
  // Senders count their attempts in the body; the route's fingerprint ignores
  // that field, so a retry is still the same request.
  return Json{{"type", "order.paid"}, {"order_id", order}, {"delivery_attempt", attempt}}.dump();
}

}  // namespace

int main(int argc, char** argv) {
  int serve_port = 0;
  std::vector<char*> args(argv, argv + argc);
  for (std::size_t i = 1; i + 1 < args.size(); ++i) {
    if (std::string(args[i]) == "--serve") {
      serve_port = std::stoi(args[i + 1]);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  }
  example::Run run(static_cast<int>(args.size()), args.data(), "7. An HTTP webhook endpoint: each order ships once");

  // A webhook sender may retry for days: keep responses for 72 hours.
  auto checker = run.checker({.ttl = std::chrono::hours(72)});
  idem::http::IdempotencyMiddleware idempotency(checker, {.header = "webhook-id", .scope = "webhooks"});
  Warehouse warehouse;
  Server server;
  server.set_tcp_nodelay(true);
  idempotency.Post(
      server, "/webhooks/orders",
      [&warehouse](const httplib::Request& request, httplib::Response& response) { warehouse.ship(request, response); },
      {.fingerprint = {.ignore_json_fields = {"/delivery_attempt"}}, .validate = &Warehouse::validate});

  const int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) {
    std::fprintf(stderr, "cannot listen on 127.0.0.1\n");
    return 2;
  }
  server.raise_backlog();
  std::thread thread([&server] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  httplib::Client client("127.0.0.1", port);

  std::printf("The sender delivers webhook msg_1 (order ord_42) three times:\n");
  std::string first_body;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto r = deliver(client, "msg_1", paid("ord_42", attempt));
    const bool replayed = r && r->has_header("Idempotent-Replayed");
    std::printf("  delivery %d -> %d%s %s\n", attempt, r ? r->status : 0, replayed ? " (replayed)" : "",
                r ? r->body.c_str() : "");
    if (attempt == 1) {
      first_body = r ? r->body : "";
      run.check(r && r->status == 200 && !replayed, "the first delivery ships the order");
    } else {
      run.check(r && r->status == 200 && replayed && r->body == first_body,
                "a redelivery gets the first response back, marked Idempotent-Replayed");
    }
  }

  std::printf("\nThe same webhook id with another order (a forgery, or a sender bug):\n");
  auto forged = deliver(client, "msg_1", paid("ord_99", 1));
  std::printf("  -> %d %s\n", forged ? forged->status : 0, forged ? forged->body.c_str() : "");
  run.check(forged && forged->status == 422, "is refused with 422 and an application/problem+json body");

  std::printf("\nA malformed delivery, then the sender's corrected one with the same id:\n");
  auto malformed = deliver(client, "msg_2", R"({"type":"order.paid"})");
  auto corrected = deliver(client, "msg_2", paid("ord_7", 2));
  std::printf("  -> %d, then %d %s\n", malformed ? malformed->status : 0, corrected ? corrected->status : 0,
              corrected ? corrected->body.c_str() : "");
  run.check(malformed && malformed->status == 400, "the malformed delivery is answered 400");
  run.check(corrected && corrected->status == 200 && !corrected->has_header("Idempotent-Replayed"),
            "its id was not used up: the corrected delivery ships");

  std::printf("\nThe warehouse is busy on the first try (503), the sender retries:\n");
  auto busy = deliver(client, "msg_3", paid("ord_busy", 1));
  auto retried = deliver(client, "msg_3", paid("ord_busy", 2));
  std::printf("  -> %d, then %d %s\n", busy ? busy->status : 0, retried ? retried->status : 0,
              retried ? retried->body.c_str() : "");
  run.check(busy && busy->status == 503, "the 503 reaches the sender");
  run.check(retried && retried->status == 200 && !retried->has_header("Idempotent-Replayed"),
            "a 5xx is not stored: the retry runs the handler again and ships");

  const auto shipments = warehouse.shipments();
  const std::multiset<std::string> shipped(shipments.begin(), shipments.end());
  std::printf("\nshipments: %zu\n", shipments.size());
  run.check(shipped == std::multiset<std::string>{"ord_42", "ord_7", "ord_busy"}, "every order shipped exactly once");

  const int status = run.finish();
  if (serve_port > 0) {
    // Serving for real: the same server on the port asked for.
    server.stop();
    thread.join();
    Server live;
    live.set_tcp_nodelay(true);
    idempotency.Post(live, "/webhooks/orders",
                     [&warehouse](const httplib::Request& request, httplib::Response& response) {
                       warehouse.ship(request, response);
                     },
                     {.fingerprint = {.ignore_json_fields = {"/delivery_attempt"}}, .validate = &Warehouse::validate});
    if (!live.bind_to_port("127.0.0.1", serve_port)) {
      std::fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", serve_port);
      return 2;
    }
    live.raise_backlog();
    std::printf("\nreceiving webhooks on http://127.0.0.1:%d/webhooks/orders (Ctrl-C to stop)\n", serve_port);
    live.listen_after_bind();
    return status;
  }
  server.stop();
  thread.join();
  return status;
}
