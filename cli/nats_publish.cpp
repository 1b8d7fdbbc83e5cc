// `idem nats-publish`: publishes each line of a JSON Lines file (an envelope
// per line) K times to a JetStream subject and reports what the server
// acknowledged. Without --msg-id the copies are stored as separate messages,
// so the consumer side must deduplicate; with it, Nats-Msg-Id is the
// envelope's idempotency key and the server drops the copies.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "idem/integrations/nats.h"
#include "nats_commands.h"

namespace idem::cli {
namespace {

struct PublishCommandOptions {
  std::string nats_url;
  std::string subject;
  std::string file;
  std::size_t copies = 1;
  bool msg_id = false;
  std::string timeout = "2s";
  bool json = false;
};

int run_publish(const PublishCommandOptions& o) {
  std::ifstream file_stream;
  std::istream* in = &std::cin;
  if (o.file != "-") {
    file_stream.open(o.file);
    if (!file_stream) throw CliError(kExitError, "cannot read " + o.file);
    in = &file_stream;
  }
  std::chrono::milliseconds timeout{};
  try {
    timeout = parse_duration(o.timeout);
  } catch (const std::exception& e) {
    throw CliError(kExitUsage, e.what());
  }
  auto conn = nats::Connection::connect({.url = o.nats_url, .name = "idem-nats-publish"});
  if (!conn) throw CliError(kExitError, conn.error().to_string());
  nats::Publisher publisher(*conn, {.ack_timeout = timeout});

  std::uint64_t lines = 0;
  std::uint64_t published = 0;
  std::uint64_t acknowledged = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t failed = 0;
  std::string first_error;
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ++lines;
    std::string msg_id;
    if (o.msg_id) {
      auto envelope = Envelope::parse(line);
      if (!envelope) {
        failed += o.copies;
        if (first_error.empty()) first_error = "line " + std::to_string(lines) + ": " + envelope.error().message();
        continue;
      }
      msg_id = envelope->effective_key();
    }
    for (std::size_t copy = 0; copy < o.copies; ++copy) {
      ++published;
      auto receipt = publisher.publish_raw(o.subject, line, msg_id);
      if (!receipt) {
        ++failed;
        if (first_error.empty()) first_error = receipt.error().to_string();
        continue;
      }
      ++acknowledged;
      if (receipt->duplicate) ++duplicates;
    }
  }
  if (o.json) {
    nlohmann::json j{{"lines", lines},           {"copies", o.copies},
                     {"published", published},   {"acknowledged", acknowledged},
                     {"duplicates", duplicates}, {"failed", failed}};
    if (!first_error.empty()) j["first_error"] = first_error;
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "nats-publish: lines=" << lines << " copies=" << o.copies << " published=" << published
              << " acknowledged=" << acknowledged << " duplicates=" << duplicates << " failed=" << failed << std::endl;
  }
  if (failed > 0) throw CliError(kExitError, std::to_string(failed) + " publishes failed; first: " + first_error);
  return kExitOk;
}

}  // namespace

void add_nats_publish_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<PublishCommandOptions>();
  CLI::App* c = app.add_subcommand("nats-publish", "Publish a JSON Lines file of envelopes to JetStream, K times each");
  c->add_option("--nats", o->nats_url, "NATS server URL")->required();
  c->add_option("--subject", o->subject, "Subject to publish to (a stream must capture it)")->required();
  c->add_option("--file", o->file, "JSON Lines file, one envelope per line ('-': stdin)")->required();
  c->add_option("--copies", o->copies, "Publish each line this many times")->check(CLI::PositiveNumber);
  c->add_flag("--msg-id", o->msg_id, "Set Nats-Msg-Id to the idempotency key (the server drops copies)");
  c->add_option("--timeout", o->timeout, "PubAck wait per attempt (default 2s)")->check(validate_duration);
  c->add_flag("--json", o->json, "Machine-readable report on stdout");
  c->callback([o, &action] { action = [o] { return run_publish(*o); }; });
}

}  // namespace idem::cli
