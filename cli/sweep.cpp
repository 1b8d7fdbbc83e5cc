// `idem sweep`: remove expired records (for stores that do not expire by
// themselves) and reclaim PROCESSING records whose lease ran out long ago.
//
// Reclaiming goes through Store::fail() with the record's own token, so it is
// fenced: if a worker took the key over between our scan and our write, its
// token is newer, fail() answers kLeaseLost and nothing is written.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "common.h"

namespace idem::cli {
namespace {

constexpr std::string_view kReclaimError = "reclaimed by idem sweep";

struct SweepOptions {
  CommonOptions common;
  std::string older_than = "15m";
  bool dry_run = false;
  std::size_t page_size = 500;
};

int run_sweep(const SweepOptions& options) {
  const auto older_than = parse_duration(options.older_than);
  auto store = open_store_or_throw(options.common, Access::kModifyExisting);
  warn_if_process_local(*store, options.common);
  const bool json = options.common.json;

  std::optional<std::uint64_t> expired_removed;
  if (!options.dry_run) {
    auto report = store->sweep();
    if (!report) throw CliError(kExitError, "sweep failed: " + report.error().to_string());
    expired_removed = report->expired_removed;
  }

  ProgressLine progress;
  std::uint64_t scanned = 0;
  std::uint64_t candidates = 0;
  std::uint64_t reclaimed = 0;
  std::uint64_t skipped = 0;  // taken over (or finished) between scan and fail
  nlohmann::json keys = nlohmann::json::array();
  ScanOptions scan;
  scan.status = ProcessingStatus::kProcessing;
  scan.limit = options.page_size;
  do {
    auto page = store->scan(scan);
    if (!page) {
      progress.clear();
      throw CliError(kExitError, "scan failed after " + std::to_string(scanned) + " records (" +
                                     std::to_string(reclaimed) + " reclaimed): " + page.error().to_string());
    }
    scanned += page->records.size();
    const Timestamp t = now();
    for (const IdempotencyRecord& record : page->records) {
      if (record.status != ProcessingStatus::kProcessing) continue;
      const auto expired_for = t - record.lease_expires_at;
      if (expired_for.count() <= 0 || expired_for < older_than) continue;
      ++candidates;
      bool done = false;
      if (!options.dry_run) {
        FailRequest request;
        request.key = record.idempotency_key;
        request.token = record.token;
        request.error = kReclaimError;
        request.retryable = true;
        Status status = store->fail(request);
        if (status) {
          ++reclaimed;
          done = true;
        } else if (status.error().code() == ErrorCode::kLeaseLost || status.error().code() == ErrorCode::kNotFound) {
          ++skipped;
        } else {
          progress.clear();
          throw CliError(kExitError, "cannot reclaim '" + record.idempotency_key + "' (" + std::to_string(reclaimed) +
                                         " reclaimed so far): " + status.error().to_string());
        }
      }
      if (json) {
        keys.push_back({{"key", record.idempotency_key},
                        {"attempt", record.attempt},
                        {"lease_expired_ms_ago", expired_for.count()},
                        {"reclaimed", done}});
      } else {
        progress.clear();
        std::cout << (options.dry_run ? "would reclaim " : (done ? "reclaimed " : "skipped (taken over) "))
                  << record.idempotency_key << " (attempt " << record.attempt << ", lease expired "
                  << format_duration(expired_for) << " ago)\n"
                  << std::flush;
      }
    }
    scan.cursor = std::move(page->next_cursor);
    if (!scan.cursor.empty()) progress.show("sweeping: " + std::to_string(scanned) + " PROCESSING records scanned...");
  } while (!scan.cursor.empty());
  progress.clear();

  if (json) {
    nlohmann::json out{
        {"dry_run", options.dry_run},
        {"older_than_ms", older_than.count()},
        {"expired_removed", expired_removed ? nlohmann::json(*expired_removed) : nlohmann::json(nullptr)},
        {"processing_scanned", scanned},
        {"stale_found", candidates},
        {"reclaimed", reclaimed},
        {"skipped", skipped},
        {"records", std::move(keys)}};
    std::cout << out.dump() << '\n';
  } else if (options.dry_run) {
    std::cout << "dry run: " << candidates << " PROCESSING records with a lease expired more than "
              << format_duration(older_than) << " ago would be reclaimed; expired records are not counted\n";
  } else {
    std::cout << "removed " << *expired_removed << " expired records; reclaimed " << reclaimed
              << " PROCESSING records with a lease expired more than " << format_duration(older_than) << " ago";
    if (skipped != 0) std::cout << "; " << skipped << " skipped (taken over meanwhile)";
    std::cout << '\n';
  }
  return kExitOk;
}

}  // namespace

void add_sweep_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<SweepOptions>();
  CLI::App* command = app.add_subcommand(
      "sweep", "Remove expired records and reclaim PROCESSING records whose lease expired long ago (fenced)");
  add_common_options(*command, options->common);
  command
      ->add_option("--older-than", options->older_than,
                   "Reclaim only records whose lease expired at least this long ago (default 15m)")
      ->check(CLI::Validator(validate_duration, "DURATION"));
  command->add_flag("--dry-run", options->dry_run, "Report what would be reclaimed; change nothing");
  command->add_option("--page-size", options->page_size, "Records fetched per store call")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}));
  command->callback([options, &action] { action = [options] { return run_sweep(*options); }; });
}

}  // namespace idem::cli
