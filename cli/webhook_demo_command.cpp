// Registers `idem webhook-demo`; the service itself is cli/webhook_demo.cpp.
#include <CLI/CLI.hpp>

#include "common.h"
#include "webhook_demo.h"

namespace idem::cli {

void add_webhook_demo_command(CLI::App& app, std::function<int()>& action) {
  auto options = std::make_shared<WebhookDemoOptions>();
  CLI::App* command = app.add_subcommand(
      "webhook-demo", "Serve a small payments API whose POST /payments honours the Idempotency-Key header");
  command->add_option("--listen", options->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  command
      ->add_option("--store", options->store_url, "Store URL (default: $IDEM_STORE_URL, else the default SQLite file)")
      ->envname("IDEM_STORE_URL");
  command->add_option("--handler-delay-ms", options->handler_delay_ms, "Each payment execution sleeps this long")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--ttl", options->ttl, "How long a response is replayed: 500ms, 30s, 24h ...")
      ->check(validate_duration)
      ->capture_default_str();
  command
      ->add_option("--wait", options->wait,
                   "A retry that finds its key in progress waits this long for the original (0: answer 409 at once)")
      ->check(validate_duration)
      ->capture_default_str();
  command->add_option("--threads", options->threads, "Worker threads (each open connection holds one)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command->add_flag("--fail-open", options->fail_open,
                    "When the store is down, run the handler unprotected instead of answering 503");
  command->callback([options, &action] { action = [options] { return run_webhook_demo(*options); }; });
}

}  // namespace idem::cli
