// `idem nats-worker`: an idempotent JetStream worker with a demo handler that
// appends `KEY TOKEN PID` to a ledger file (O_APPEND, then fsync). It creates
// the stream, its dead-letter stream and the durable consumer when absent,
// runs until SIGINT/SIGTERM, drains, and prints a one-line summary. Tests,
// docs and demos run it as a real process (and kill it).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "idem/integrations/nats.h"
#include "nats_commands.h"

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
    // The seam for the PostgreSQL store's transactional completion: the
    // handler inserts its row and completes the record in one transaction,
    // then tells the consumer (MessageContext::set_completed_by_handler).
    if (store_url.rfind("postgresql://", 0) != 0 && store_url.rfind("postgres://", 0) != 0) {
      throw CliError(kExitUsage,
                     "--ledger-table needs a postgresql:// store (the row is written in the handler's "
                     "own transaction); got " +
                         redact_url(store_url));
    }
    throw CliError(kExitError,
                   "--ledger-table needs the postgres store's transactional completion, which this "
                   "build does not have yet; use --ledger PATH");
  }
  if (o.ledger.empty()) throw CliError(kExitUsage, "--ledger PATH is required (or --ledger-table with postgres)");
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

  Ledger ledger(o.ledger);
  CheckerOptions checker_options;
  checker_options.lease = lease;
  checker_options.key.scope = o.scope;
  auto checker = IdempotencyChecker::from_url(store_url, checker_options);
  if (!checker) {
    throw CliError(kExitError, "cannot open store " + redact_url(store_url) + ": " + checker.error().to_string());
  }

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
  auto consumer = nats::Consumer::start(*conn, *checker, consumer_options, [&](nats::MessageContext& ctx) {
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    ledger.append(ctx.envelope().effective_key(), ctx.token());
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
                "Sleep this long after the effect, before completing (widens the crash window, for tests)");
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
