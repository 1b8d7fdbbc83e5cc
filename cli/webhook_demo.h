// File: cli/webhook_demo.h
//
// `idem webhook-demo`: a small payments service whose POST /payments is made
// idempotent by idem::http (the Idempotency-Key header). Used by the README,
// docs/http.md and the HTTP integration tests.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace idem::cli {

struct WebhookDemoOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free one
  std::string store_url;                  // empty: IDEM_STORE_URL, else the default SQLite file
  int handler_delay_ms = 0;               // each execution sleeps this long
  std::string ttl = "24h";                // how long a response is replayed
  std::string wait = "0";                 // a retry waits this long for the original before 409
  int threads = 64;                       // worker threads (one per open connection)
  bool fail_open = false;                 // store down: run the handler unprotected instead of 503
};

// Serves until SIGINT or SIGTERM; returns the process exit code.
int run_webhook_demo(const WebhookDemoOptions& options);

// Registers the subcommand (the `Action` of common.h).
void add_webhook_demo_command(CLI::App& app, std::function<int()>& action);

}  // namespace idem::cli
