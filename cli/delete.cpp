// `idem delete KEY`: remove one record, after a confirmation.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "common.h"

namespace idem::cli {
namespace {

struct DeleteOptions {
  CommonOptions common;
  std::string key;
  std::string scope;
  bool yes = false;
};

bool confirm(const Found& found) {
  const Timestamp t = now();
  std::cerr << "Record " << found.key << ": " << to_string(found.record.status) << ", attempt " << found.record.attempt
            << ", lease " << lease_summary(found.record, t) << ".\n";
  if (found.record.status == ProcessingStatus::kProcessing && found.record.lease_valid(t)) {
    std::cerr << "A worker holds this key right now; after the delete, a redelivery runs the handler again.\n";
  } else if (found.record.status == ProcessingStatus::kCompleted) {
    std::cerr << "The event is done; after the delete, a redelivery runs the handler again.\n";
  }
  std::cerr << "Delete it? [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes" || answer == "YES";
}

int run_delete(const DeleteOptions& options) {
  // Decide before touching the store whether we may ask at all: a script
  // without --yes must fail loudly, never hang on a prompt nor delete.
  if (!options.yes && !stdin_is_tty()) {
    throw CliError(kExitUsage, "refusing to delete '" + options.key +
                                   "' without confirmation: stdin is not a terminal (pass --yes)");
  }
  auto store = open_store_or_throw(options.common, Access::kModifyExisting);
  warn_if_process_local(*store, options.common);
  auto found = find_record(*store, options.key, options.scope);
  if (!found) throw CliError(kExitNotFound, "no record for key '" + options.key + "'");
  if (!options.yes && !confirm(*found)) throw CliError(kExitError, "not deleted: not confirmed");
  auto removed = store->remove(found->key);
  if (!removed) throw CliError(kExitError, "cannot delete '" + found->key + "': " + removed.error().to_string());
  if (!*removed) throw CliError(kExitNotFound, "no record for key '" + found->key + "' (deleted meanwhile)");
  if (options.common.json) {
    nlohmann::json out{
        {"key", found->key}, {"deleted", true}, {"status", std::string(to_string(found->record.status))}};
    std::cout << out.dump() << '\n';
  } else {
    std::cout << "deleted " << found->key << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_delete_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<DeleteOptions>();
  CLI::App* command = app.add_subcommand("delete", "Delete one record (the next delivery of its event runs again)");
  add_common_options(*command, options->common);
  command->add_option("key", options->key, "The store key as `idem list` prints it, or a raw idempotency key")
      ->required();
  command->add_option("--scope", options->scope, "Handler scope, to complete a raw idempotency key");
  command->add_flag("-y,--yes", options->yes, "Do not ask for confirmation (required when stdin is not a terminal)");
  command->callback([options, &action] { action = [options] { return run_delete(*options); }; });
}

}  // namespace idem::cli
