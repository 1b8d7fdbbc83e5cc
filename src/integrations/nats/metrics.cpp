// Consumer::render_metrics(): the consumer's counters in the Prometheus text
// format, meant to be appended to MetricsRegistry::render() on one page.
#include "idem/core/metrics.h"

#include <string>

#include "idem/integrations/nats.h"
#include "integrations/nats/connection_impl.h"
#include "integrations/nats/consumer_impl.h"

namespace idem::nats {

std::string Consumer::render_metrics(std::string_view prefix) const {
  const ConsumerStats s = stats();
  const std::string labels = "stream=\"" + escape_label_value(impl_->options.stream) + "\",consumer=\"" +
                             escape_label_value(impl_->options.durable) + "\"";
  std::string out;
  auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += prefix;
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += prefix;
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  auto sample = [&](std::string_view name, std::string_view extra, std::uint64_t value) {
    out += prefix;
    out += name;
    out += '{';
    out += labels;
    if (!extra.empty()) {
      out += ',';
      out += extra;
    }
    out += "} ";
    out += std::to_string(value);
    out += '\n';
  };

  family("nats_messages_total", "counter", "Messages settled by the consumer, by outcome.");
  for (std::size_t i = 0; i < kMessageOutcomeCount; ++i) {
    sample("nats_messages_total", "outcome=\"" + std::string(to_string(static_cast<MessageOutcome>(i))) + "\"",
           s.outcomes[i]);
  }
  family("nats_dead_letters_total", "counter", "Messages dead-lettered and terminated, by reason.");
  for (std::size_t i = 0; i < kDeadLetterReasonCount; ++i) {
    sample("nats_dead_letters_total", "reason=\"" + std::string(to_string(static_cast<DeadLetterReason>(i))) + "\"",
           s.dead_letters[i]);
  }
  family("nats_handler_runs_total", "counter", "Handler executions.");
  sample("nats_handler_runs_total", "", s.handler_runs);
  family("nats_fetched_total", "counter", "Messages received from pull requests.");
  sample("nats_fetched_total", "", s.fetched);
  family("nats_in_flight", "gauge", "Messages fetched and not yet settled.");
  sample("nats_in_flight", "", s.in_flight);
  family("nats_ack_errors_total", "counter", "Ack, nak or term calls the client refused (the server redelivers).");
  sample("nats_ack_errors_total", "", s.ack_errors);
  family("nats_fetch_errors_total", "counter", "Pull requests that failed (disconnects, server restarts).");
  sample("nats_fetch_errors_total", "", s.fetch_errors);
  family("nats_reconnects_total", "counter", "Times the NATS connection came back after a drop.");
  sample("nats_reconnects_total", "", impl_->connection->reconnects());
  return out;
}

}  // namespace idem::nats
