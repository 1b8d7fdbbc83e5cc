// `idem nats-worker`: an idempotent JetStream worker with a demo handler that
// appends `KEY TOKEN PID` to a ledger file (O_APPEND, then fsync), or, with a
// postgresql:// store and --ledger-table, inserts that row in the handler's
// own transaction together with the COMPLETED record (exactly once). It
// creates the stream, its dead-letter stream and the durable consumer when
// absent, runs until SIGINT/SIGTERM, drains, and prints a one-line summary.
// Tests, docs and demos run it as a real process (and kill it).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "idem/integrations/nats.h"
#include "nats_commands.h"
#ifdef IDEM_CLI_WITH_POSTGRES
#include "idem/stores/postgres.h"
#endif

namespace idem::cli {
namespace {

struct WorkerOptions {
  std::string nats_url;
  std::string stream;
  std::vector<std::string> subjects;
  std::string consumer;
  std::string store_url;
  std::string ledger;
  std::string ledger_table;
  std::string lease = "30s";
  std::string scope;
  std::size_t handler_delay_ms = 0;
  std::size_t effect_delay_ms = 0;
  std::size_t ack_delay_ms = 0;
  std::uint32_t max_deliver = 5;
  std::string dlq_subject;
  std::size_t concurrency = 4;
  std::size_t max_in_flight = 0;
  bool json = false;
};

// Ledger is where the demo handler's side effect lands: one line per run,
// written with one write() on an O_APPEND descriptor (lines of concurrent
// workers never interleave) and made durable with fsync before completion.
class Ledger {
 public:
  explicit Ledger(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) throw CliError(kExitError, "cannot open ledger " + path + ": " + std::strerror(errno));
  }
  ~Ledger() { ::close(fd_); }
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  void append(std::string_view key, Token token) const {
    std::string line(key);
    line += ' ';
    line += std::to_string(token);
    line += ' ';
    line += std::to_string(::getpid());
    line += '\n';
    const ssize_t written = ::write(fd_, line.data(), line.size());
    if (written != static_cast<ssize_t>(line.size())) {
      throw std::runtime_error(std::string("ledger write failed: ") + std::strerror(errno));
    }
    if (::fsync(fd_) != 0) throw std::runtime_error(std::string("ledger fsync failed: ") + std::strerror(errno));
  }

 private:
  int fd_;
};

#ifdef IDEM_CLI_WITH_POSTGRES
// LedgerTable is the transactional ledger: one row per handler run, inserted
// in the handler's own transaction, which also marks the key COMPLETED
// (fenced by the token) and commits. A worker killed before the commit
// leaves nothing; after it, the key is a completed duplicate. So every key
// has exactly one row, whatever dies when.
class LedgerTable {
 public:
  // Creates the table when absent. `table` is an identifier, optionally
  // schema-qualified (checked before: it is spliced into SQL).
  LedgerTable(std::shared_ptr<IdempotencyChecker> checker, std::string table)
      : checker_(std::move(checker)), table_(std::move(table)) {
    auto tx = PostgresTransaction::begin(checker_->store());
    if (!tx) throw CliError(kExitError, "--ledger-table: " + tx.error().to_string());
    // Workers starting together must not race on CREATE TABLE IF NOT EXISTS.
    auto lock = tx->exec("SELECT pg_advisory_xact_lock(hashtext('idem-ledger-table:' || $1))", {table_});
    if (!lock) throw CliError(kExitError, "--ledger-table " + table_ + ": " + lock.error().to_string());
    auto created = tx->exec("CREATE TABLE IF NOT EXISTS " + table_ +
                            " (id bigserial PRIMARY KEY, idem_key text NOT NULL, token bigint NOT NULL, "
                            "pid integer NOT NULL, event_id text NOT NULL, inserted_at timestamptz NOT NULL DEFAULT "
                            "now())");
    if (!created) throw CliError(kExitError, "--ledger-table " + table_ + ": " + created.error().to_string());
    if (Status s = tx->commit(); !s) throw CliError(kExitError, "--ledger-table: " + s.error().to_string());
    insert_ = "INSERT INTO " + table_ + " (idem_key, token, pid, event_id) VALUES ($1, $2, $3, $4)";
  }

  // Runs one message: the row and the completion commit together.
  // `effect_delay` sleeps between the insert and the commit, `ack_delay`
  // after the commit (the two crash windows, for tests). Errors are thrown
  // typed: the consumer naks retryable ones (a lost lease included) and
  // dead-letters the rest.
  std::string handle(nats::MessageContext& ctx, std::chrono::milliseconds effect_delay,
                     std::chrono::milliseconds ack_delay) const {
    auto tx = PostgresTransaction::begin(checker_->store());
    if (!tx) throw_error(std::move(tx).error());
    auto row = tx->exec(insert_, {ctx.envelope().effective_key(), std::to_string(ctx.token()),
                                  std::to_string(::getpid()), ctx.envelope().event_id});
    if (!row) throw_error(std::move(row).error());
    if (effect_delay.count() > 0) std::this_thread::sleep_for(effect_delay);
    std::string result = R"({"ledger_table":"inserted"})";
    Status committed = tx->commit_completed(
        {.key = ctx.key(), .token = ctx.token(), .result = result, .ttl = checker_->options().ttl});
    if (!committed) throw_error(std::move(committed).error());
    ctx.set_completed_by_handler();
    if (ack_delay.count() > 0) std::this_thread::sleep_for(ack_delay);
    return result;
  }

 private:
  std::shared_ptr<IdempotencyChecker> checker_;
  std::string table_;
  std::string insert_;
};
#endif

// A table name spliced into SQL: [schema.]name, unquoted identifiers only.
bool valid_table_name(std::string_view name) {
  auto identifier = [](std::string_view part) {
    if (part.empty() || part.size() > 63 || (part[0] >= '0' && part[0] <= '9')) return false;
    return std::all_of(part.begin(), part.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
  };
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos) return identifier(name);
  return identifier(name.substr(0, dot)) && identifier(name.substr(dot + 1));
}

std::string summary(const nats::ConsumerStats& s, const nats::Connection& conn, bool json) {
  using nats::MessageOutcome;
  const std::pair<const char*, std::uint64_t> fields[] = {
      {"settled", s.settled()},
      {"acked", s.count(MessageOutcome::kAcked)},
      {"duplicates", s.count(MessageOutcome::kAckedDuplicate)},
      {"nak_in_progress", s.count(MessageOutcome::kNakInProgress)},
      {"nak_retry", s.count(MessageOutcome::kNakRetry)},
      {"nak_store_error", s.count(MessageOutcome::kNakStoreError)},
      {"nak_lease_lost", s.count(MessageOutcome::kNakLeaseLost)},
      {"dead_lettered", s.count(MessageOutcome::kDeadLettered)},
      {"dead_letter_failed", s.count(MessageOutcome::kDeadLetterFailed)},
      {"abandoned", s.count(MessageOutcome::kAbandoned)},
      {"handler_runs", s.handler_runs},
      {"ack_errors", s.ack_errors},
      {"reconnects", conn.reconnects()},
  };
  std::string out;
  if (json) {
    nlohmann::json j;
    for (const auto& [name, value] : fields) j[name] = value;
    j["pid"] = ::getpid();
    return j.dump();
  }
  out = "nats-worker: stopped:";
  for (const auto& [name, value] : fields) {
    out += ' ';
    out += name;
    out += '=';
    out += std::to_string(value);
  }
  out += " pid=" + std::to_string(::getpid());
  return out;
}

int run_worker(const WorkerOptions& o) {
  const std::string store_url = effective_store_url({.store_url = o.store_url});
  if (!o.ledger_table.empty()) {
    // The PostgreSQL store's transactional completion: the handler inserts
    // its row and completes the record in one transaction, then tells the
    // consumer (MessageContext::set_completed_by_handler).
    if (store_url.rfind("postgresql://", 0) != 0 && store_url.rfind("postgres://", 0) != 0) {
      throw CliError(kExitUsage,
                     "--ledger-table needs a postgresql:// store (the row is written in the handler's "
                     "own transaction); got " +
                         redact_url(store_url));
    }
    if (!o.ledger.empty()) throw CliError(kExitUsage, "--ledger and --ledger-table exclude each other");
    if (!valid_table_name(o.ledger_table)) {
      throw CliError(kExitUsage, "--ledger-table '" + o.ledger_table +
                                     "' must be a table name: letters, digits and '_', optionally schema.table");
    }
#ifndef IDEM_CLI_WITH_POSTGRES
    throw CliError(kExitError, "--ledger-table needs the PostgreSQL store, which this build does not have");
#endif
  } else if (o.ledger.empty()) {
    throw CliError(kExitUsage, "--ledger PATH is required (or --ledger-table with postgres)");
  }
  std::chrono::milliseconds lease{};
  try {
    lease = parse_duration(o.lease);
  } catch (const std::exception& e) {
    throw CliError(kExitUsage, e.what());
  }

  // Block the stop signals before any thread starts, so that every thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::optional<Ledger> ledger;
  if (o.ledger_table.empty()) ledger.emplace(o.ledger);
  CheckerOptions checker_options;
  checker_options.lease = lease;
  checker_options.key.scope = o.scope;
  auto checker = IdempotencyChecker::from_url(store_url, checker_options);
  if (!checker) {
    throw CliError(kExitError, "cannot open store " + redact_url(store_url) + ": " + checker.error().to_string());
  }
#ifdef IDEM_CLI_WITH_POSTGRES
  std::optional<LedgerTable> table;
  if (!o.ledger_table.empty()) table.emplace(*checker, o.ledger_table);
#endif

  auto conn = nats::Connection::connect({.url = o.nats_url,
                                         .name = "idem-nats-worker",
                                         .on_event = [](nats::ConnectionEvent event, std::string_view detail) {
                                           std::cerr << "nats-worker: " << nats::to_string(event) << " (" << detail
                                                     << ")\n";
                                         }});
  if (!conn) throw CliError(kExitError, conn.error().to_string());
  if (Status s = nats::ensure_stream(**conn, {.name = o.stream, .subjects = o.subjects}); !s) {
    throw CliError(kExitError, s.error().to_string());
  }
  const std::string dlq = o.dlq_subject.empty() ? nats::default_dead_letter_subject(o.stream) : o.dlq_subject;
  if (Status s = nats::ensure_stream(**conn, {.name = o.stream + "_DLQ", .subjects = {dlq}}); !s) {
    throw CliError(kExitError, "dead-letter stream for '" + dlq + "': " + s.error().to_string());
  }

  nats::ConsumerOptions consumer_options;
  consumer_options.stream = o.stream;
  consumer_options.durable = o.consumer;
  consumer_options.concurrency = o.concurrency;
  consumer_options.max_in_flight = o.max_in_flight;
  consumer_options.max_deliver = o.max_deliver;
  consumer_options.dead_letter_subject = dlq;
  const auto delay = std::chrono::milliseconds(o.handler_delay_ms);
  const auto effect_delay = std::chrono::milliseconds(o.effect_delay_ms);
  const auto ack_delay = std::chrono::milliseconds(o.ack_delay_ms);
  auto consumer = nats::Consumer::start(*conn, *checker, consumer_options, [&](nats::MessageContext& ctx) {
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
#ifdef IDEM_CLI_WITH_POSTGRES
    if (table) return table->handle(ctx, effect_delay, ack_delay);
#endif
    ledger->append(ctx.envelope().effective_key(), ctx.token());
    // A crash here (after the effect, before the completion) is the one
    // that makes an at-least-once effect happen twice; tests widen it.
    if (effect_delay.count() > 0) std::this_thread::sleep_for(effect_delay);
    return std::string(R"({"ledger":"appended"})");
  });
  if (!consumer) throw CliError(kExitError, consumer.error().to_string());
  std::cerr << "nats-worker: consuming " << o.stream << "/" << o.consumer << " (pid " << ::getpid() << ", ack wait "
            << format_duration((*consumer)->ack_wait()) << ", store " << redact_url(store_url) << ")\n";

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::cerr << "nats-worker: " << (signal_number == SIGINT ? "SIGINT" : "SIGTERM") << ", draining\n";
  (*consumer)->stop();
  std::cout << summary((*consumer)->stats(), **conn, o.json) << std::endl;
  return kExitOk;
}

}  // namespace

void add_nats_worker_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<WorkerOptions>();
  CLI::App* c = app.add_subcommand("nats-worker",
                                   "Consume a JetStream stream through Idem; the demo handler appends KEY TOKEN PID "
                                   "to a ledger file. Runs until SIGINT/SIGTERM");
  c->add_option("--nats", o->nats_url, "NATS server URL (comma-separated list accepted)")->required();
  c->add_option("--stream", o->stream, "Stream name (created when absent)")->required();
  c->add_option("--subjects", o->subjects, "Subjects of the stream when it is created, e.g. 'orders.>'")
      ->required()
      ->delimiter(',');
  c->add_option("--consumer", o->consumer, "Durable consumer name, shared by all workers")->required();
  c->add_option("--store", o->store_url, "Store URL (default: $IDEM_STORE_URL, else the default SQLite file)")
      ->envname("IDEM_STORE_URL");
  c->add_option("--ledger", o->ledger, "Ledger file the demo handler appends to");
  c->add_option("--ledger-table", o->ledger_table,
                "With a postgresql:// store: insert the row in the handler's own transaction instead");
  c->add_option("--handler-delay-ms", o->handler_delay_ms, "Sleep this long in the handler before the effect");
  c->add_option("--effect-delay-ms", o->effect_delay_ms,
                "Sleep this long after the effect, before completing (with --ledger-table: between the insert and "
                "the commit); widens that crash window, for tests");
  c->add_option("--ack-delay-ms", o->ack_delay_ms,
                "With --ledger-table: sleep this long after the commit, before the message is acked (widens that "
                "crash window, for tests)");
  c->add_option("--max-deliver", o->max_deliver, "Handler attempts per key before the dead letter (0: unlimited)");
  c->add_option("--dlq-subject", o->dlq_subject, "Dead-letter subject (default idem.dlq.<stream>)");
  c->add_option("--concurrency", o->concurrency, "Handler threads")->check(CLI::PositiveNumber);
  c->add_option("--max-in-flight", o->max_in_flight, "Messages fetched and not settled (default 4 x concurrency)");
  c->add_option("--lease", o->lease, "Idem lease; the consumer's AckWait follows it (default 30s)")
      ->check(validate_duration);
  c->add_option("--scope", o->scope, "Key scope of the handler");
  c->add_flag("--json", o->json, "Print the summary as JSON");
  c->callback([o, &action] { action = [o] { return run_worker(*o); }; });
}

}  // namespace idem::cli
