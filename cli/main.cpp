// The `idem` command line: inspect and repair idempotency state on any store,
// and measure it (bench). Every subcommand is thin over the public API.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "common.h"
#include "idem/core/error.h"
#ifdef IDEM_CLI_WITH_NATS
#include "nats_commands.h"
#endif
#ifdef IDEM_HAVE_HTTP
#include "webhook_demo.h"
#endif

int main(int argc, char** argv) {
  using namespace idem::cli;
  CLI::App app("idem: run event handlers once per idempotency key; inspect and repair the store", "idem");
  app.set_version_flag("--version", "idem 0.1.0");
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 1 error, 2 usage, 3 unhealthy, 4 not found, 5 bench check failed. See docs/cli.md.");

  Action action;
  add_get_command(app, action);
  add_delete_command(app, action);
  add_list_command(app, action);
  add_sweep_command(app, action);
  add_stats_command(app, action);
  add_bench_command(app, action);
  add_demo_command(app, action);
#ifdef IDEM_CLI_WITH_NATS
  add_nats_worker_command(app, action);
  add_nats_publish_command(app, action);
#endif
#ifdef IDEM_HAVE_HTTP
  add_webhook_demo_command(app, action);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "idem: usage error: %s (see idem --help)\n", e.what());
    return kExitUsage;
  }

  try {
    return action ? action() : kExitUsage;
  } catch (const CliError& e) {
    std::fprintf(stderr, "idem: error: %s\n", e.what());
    return e.code();
  } catch (const idem::IdemError& e) {
    std::fprintf(stderr, "idem: error: %s\n", e.what());
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "idem: error: %s\n", e.what());
    return kExitError;
  }
}
