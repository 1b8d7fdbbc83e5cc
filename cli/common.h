// File: cli/common.h
//
// What every `idem` subcommand shares: the --store/--json options, exit
// codes, the one-line error, durations, terminal detection and the JSON and
// text rendering of a record.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "idem/core/record.h"
#include "idem/core/store.h"

namespace CLI {
class App;
}  // namespace CLI

namespace idem::cli {

// Exit codes (documented in docs/cli.md; scripts depend on them).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,        // the store failed or refused; the message says why
  kExitUsage = 2,        // bad command line, or a confirmation that cannot be asked
  kExitUnhealthy = 3,    // stats --health: the store is not usable
  kExitNotFound = 4,     // get/delete: no such record
  kExitCheckFailed = 5,  // bench: handler executions != unique keys
};

// CliError is thrown by a subcommand to end with `code` and one line on
// stderr. main() prints it as "idem: error: <message>".
class CliError : public std::runtime_error {
 public:
  CliError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

struct CommonOptions {
  std::string store_url;  // empty: IDEM_STORE_URL, then default_store_url()
  bool json = false;
};

// Adds --store and --json to a subcommand.
void add_common_options(CLI::App& command, CommonOptions& options);

// The URL to use: --store, else IDEM_STORE_URL, else default_store_url().
std::string effective_store_url(const CommonOptions& options);

// Hides the password of "scheme://user:password@host" URLs for display.
std::string redact_url(std::string_view url);

// What a subcommand does with the store. Only kModify creates a store that
// does not exist: commands that work on existing records (get, list, stats,
// delete, sweep) must say that nothing is at a mistyped path, not show or
// change an empty store they just made.
enum class Access : std::uint8_t {
  kInspect,         // get, list, stats: read existing records
  kModifyExisting,  // delete, sweep: change existing records
  kModify,          // may create the store (bench, demo)
};

// Opens the store or throws CliError(kExitError) naming the URL. Except
// with kModify, a store that does not exist is reported (nothing is created).
std::shared_ptr<Store> open_store_or_throw(const CommonOptions& options, Access access = Access::kModify);

// A note on stderr when the store is memory://: a fresh process sees an
// empty store, which surprises people who expect to inspect another process.
void warn_if_process_local(const Store& store, const CommonOptions& options);

// Parses "90s", "15m", "2h", "1d", "500ms", "1h30m", "0". Throws
// std::invalid_argument with a message naming the text.
std::chrono::milliseconds parse_duration(std::string_view text);
// A CLI11 validator wrapping parse_duration (for the --help text and errors).
std::string validate_duration(const std::string& text);

// "1.5s", "2m05s", "3h04m", "2d03h"; "-" prefix for negatives.
std::string format_duration(std::chrono::milliseconds duration);

Timestamp now();

bool stdin_is_tty();
bool stderr_is_tty();

// The record as JSON, with derived lease and TTL fields (see docs/cli.md).
nlohmann::json record_to_json(const IdempotencyRecord& record, Timestamp now);
// is_legacy() is true for a record of the original Python module (token 0),
// which the Redis store reads in place; get and list mark it.
bool is_legacy(const IdempotencyRecord& record);
// The record as a readable multi-line block.
std::string record_to_text(const IdempotencyRecord& record, Timestamp now);
// "held, 12.5s left" / "expired 3m ago" / "none (COMPLETED)".
std::string lease_summary(const IdempotencyRecord& record, Timestamp now);

// Resolves KEY as given on the command line to the record it names: the full
// store key as `list` prints it, or a raw idempotency key (with --scope)
// completed to prefix + scope + key. Returns the store key found, or nullopt.
struct Found {
  std::string key;
  IdempotencyRecord record;
};
std::optional<Found> find_record(Store& store, std::string_view key, std::string_view scope);

// ProgressLine draws a transient status line on stderr when it is a
// terminal, and nothing otherwise. clear() before writing other output.
class ProgressLine {
 public:
  ProgressLine();
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  bool enabled() const noexcept { return enabled_; }
  void show(std::string_view text);
  void clear();

 private:
  bool enabled_;
  bool shown_ = false;
};

// Registration of a subcommand: it sets `action` when it is selected.
using Action = std::function<int()>;
void add_get_command(CLI::App& app, Action& action);
void add_delete_command(CLI::App& app, Action& action);
void add_list_command(CLI::App& app, Action& action);
void add_sweep_command(CLI::App& app, Action& action);
void add_stats_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_demo_command(CLI::App& app, Action& action);

}  // namespace idem::cli
