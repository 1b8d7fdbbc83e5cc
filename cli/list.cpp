// `idem list`: stream records page by page through Store::scan (SCAN on
// Redis, keyset pagination on SQL stores): never one blocking call over the
// whole keyspace.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <string>

#include "common.h"

namespace idem::cli {
namespace {

struct ListOptions {
  CommonOptions common;
  std::string status;
  std::string older_than = "0";
  std::size_t limit = 0;
  std::string prefix;
  std::size_t page_size = 500;
};

std::optional<ProcessingStatus> parse_status_option(std::string text) {
  if (text.empty()) return std::nullopt;
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (text == "IN_PROGRESS" || text == "INFLIGHT") text = "PROCESSING";
  auto status = parse_status(text);
  if (!status) throw CliError(kExitUsage, "invalid --status '" + text + "' (PROCESSING, COMPLETED or FAILED)");
  return status;
}

int run_list(const ListOptions& options) {
  ScanOptions scan;
  scan.status = parse_status_option(options.status);
  scan.older_than = parse_duration(options.older_than);
  scan.prefix = options.prefix;
  auto store = open_store_or_throw(options.common, Access::kInspect);
  warn_if_process_local(*store, options.common);

  ProgressLine progress;
  const bool json = options.common.json;
  if (!json) std::printf("%-10s  %9s  %7s  %s\n", "STATUS", "AGE", "ATTEMPT", "KEY");
  std::size_t printed = 0;
  std::size_t scanned = 0;
  std::size_t pages = 0;
  std::string out;
  do {
    scan.limit = options.page_size;
    if (options.limit != 0) scan.limit = std::min(scan.limit, options.limit - printed);
    auto page = store->scan(scan);
    if (!page) {
      progress.clear();
      throw CliError(kExitError,
                     "scan failed after " + std::to_string(scanned) + " records: " + page.error().to_string());
    }
    ++pages;
    scanned += page->records.size();
    const Timestamp t = now();
    out.clear();
    for (const IdempotencyRecord& record : page->records) {
      // Filters are applied here too: a store may treat them as hints.
      if (scan.status && record.status != *scan.status) continue;
      if (scan.older_than.count() > 0 && t - record.first_seen_at < scan.older_than) continue;
      if (!scan.prefix.empty() && !record.idempotency_key.starts_with(scan.prefix)) continue;
      if (json) {
        out += record_to_json(record, t).dump();
        out += '\n';
      } else {
        std::array<char, 64> head{};
        std::snprintf(head.data(), head.size(), "%-10s  %9s  %7u  ", std::string(to_string(record.status)).c_str(),
                      format_duration(t - record.first_seen_at).c_str(), record.attempt);
        out += head.data();
        out += record.idempotency_key;
        if (is_legacy(record)) out += "  (legacy)";
        out += '\n';
      }
      if (++printed == options.limit) break;
    }
    progress.clear();
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    scan.cursor = std::move(page->next_cursor);
    if (!scan.cursor.empty()) {
      progress.show("scanning: " + std::to_string(scanned) + " records in " + std::to_string(pages) + " pages, " +
                    std::to_string(printed) + " listed...");
    }
  } while (!scan.cursor.empty() && (options.limit == 0 || printed < options.limit));
  progress.clear();
  if (!json && stderr_is_tty()) std::fprintf(stderr, "%zu records listed\n", printed);
  return kExitOk;
}

}  // namespace

void add_list_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<ListOptions>();
  CLI::App* command = app.add_subcommand("list", "List records, streaming page by page (JSON: one object per line)");
  add_common_options(*command, options->common);
  command->add_option("--status", options->status, "Only PROCESSING, COMPLETED or FAILED records");
  command
      ->add_option("--older-than", options->older_than,
                   "Only records first seen at least this long ago (90s, 15m, 2h, 1d)")
      ->check(CLI::Validator(validate_duration, "DURATION"));
  command->add_option("--limit", options->limit, "Stop after N records (0: all)");
  command->add_option("--prefix", options->prefix, "Only keys starting with this");
  command->add_option("--page-size", options->page_size, "Records fetched per store call")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}));
  command->callback([options, &action] { action = [options] { return run_list(*options); }; });
}

}  // namespace idem::cli
