// Registers `idem demo`; the demo itself is cli/demo.cpp.
#include <CLI/CLI.hpp>

#include "common.h"
#include "demo.h"

namespace idem::cli {

void add_demo_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* command = app.add_subcommand(
      "demo", "Play an at-least-once stream, with a worker that dies mid-handler, against a real store");
  command
      ->add_option("--store", options->store_url, "Store URL (default: $IDEM_STORE_URL, else the default SQLite file)")
      ->envname("IDEM_STORE_URL");
  command->add_option("--events", options->events, "Distinct events")->check(CLI::PositiveNumber);
  command->add_option("--workers", options->workers, "Concurrent workers")->check(CLI::PositiveNumber);
  command->add_option("--deliveries", options->deliveries_per_event, "Deliveries of each event")
      ->check(CLI::PositiveNumber);
  command->add_flag("--json", options->json, "Machine-readable output on stdout");
  command->callback([options, &action] { action = [options] { return run_demo(*options); }; });
}

}  // namespace idem::cli
