// `idem get KEY`: one record, its lease and its TTL.
#include <CLI/CLI.hpp>
#include <iostream>

#include "common.h"

namespace idem::cli {
namespace {

struct GetOptions {
  CommonOptions common;
  std::string key;
  std::string scope;
};

int run_get(const GetOptions& options) {
  auto store = open_store_or_throw(options.common, Access::kInspect);
  warn_if_process_local(*store, options.common);
  auto found = find_record(*store, options.key, options.scope);
  if (!found) throw CliError(kExitNotFound, "no record for key '" + options.key + "'");
  const Timestamp t = now();
  if (options.common.json) {
    std::cout << record_to_json(found->record, t).dump() << '\n';
  } else {
    std::cout << record_to_text(found->record, t);
  }
  return kExitOk;
}

}  // namespace

void add_get_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<GetOptions>();
  CLI::App* command = app.add_subcommand("get", "Show one record: status, result, lease and TTL");
  add_common_options(*command, options->common);
  command->add_option("key", options->key, "The store key as `idem list` prints it, or a raw idempotency key")
      ->required();
  command->add_option("--scope", options->scope, "Handler scope, to complete a raw idempotency key");
  command->callback([options, &action] { action = [options] { return run_get(*options); }; });
}

}  // namespace idem::cli
