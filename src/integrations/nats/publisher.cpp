// Publisher: JetStream publish with Nats-Msg-Id, PubAck wait and retries.
#include <nats/nats.h>

#include <algorithm>
#include <string>
#include <thread>

#include "idem/core/key.h"
#include "idem/integrations/nats.h"
#include "integrations/nats/connection_impl.h"
#include "integrations/nats/handles.h"

namespace idem::nats {

Publisher::Publisher(std::shared_ptr<Connection> connection, PublishOptions options)
    : connection_(std::move(connection)), options_(std::move(options)) {
  if (!connection_)
    throw ConfigurationError(Error(ErrorCode::kInvalidConfiguration, "nats: Publisher needs a connection"));
  if (options_.max_attempts == 0) options_.max_attempts = 1;
}

Result<PublishReceipt> Publisher::publish(std::string_view subject, const Envelope& envelope) const {
  std::string msg_id = options_.msg_id ? options_.msg_id(envelope) : envelope.effective_key();
  if (msg_id.empty()) {
    return Error(ErrorCode::kInvalidArgument, "nats: envelope '" + envelope.event_id + "' has an empty message id");
  }
  return publish_raw(subject, envelope.to_json(), msg_id);
}

Result<PublishReceipt> Publisher::publish_raw(std::string_view subject, std::string_view data, std::string_view msg_id,
                                              const Headers& headers) const {
  if (subject.empty()) return Error(ErrorCode::kInvalidConfiguration, "nats: publish subject is empty");
  const std::string subject_text(subject);
  const std::string msg_id_text(msg_id);
  std::chrono::milliseconds backoff = options_.retry_backoff;
  Error last(ErrorCode::kInternal, "nats: publish not attempted");
  for (std::uint32_t attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    // A fresh message per attempt: js_PublishMsg adds headers to the one it
    // is given.
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, subject_text.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
    detail::MsgPtr msg(raw);
    for (const auto& [name, value] : headers) {
      if (s == NATS_OK) s = natsMsgHeader_Add(msg.get(), name.c_str(), value.c_str());
    }
    if (s != NATS_OK) return detail::nats_error(s, jsErrCode{}, "cannot build the message for '" + subject_text + "'");

    jsPubOptions pub;
    jsPubOptions_Init(&pub);
    pub.MaxWait = options_.ack_timeout.count();
    if (!msg_id_text.empty()) pub.MsgId = msg_id_text.c_str();
    if (!options_.expect_stream.empty()) pub.ExpectStream = options_.expect_stream.c_str();
    jsPubAck* raw_ack = nullptr;
    jsErrCode js_code{};
    s = js_PublishMsg(&raw_ack, connection_->impl().js, msg.get(), &pub, &js_code);
    detail::PubAckPtr ack(raw_ack);
    if (s == NATS_OK) {
      PublishReceipt receipt;
      if (ack) {
        receipt.stream = ack->Stream != nullptr ? ack->Stream : "";
        receipt.sequence = ack->Sequence;
        receipt.duplicate = ack->Duplicate;
      }
      receipt.attempts = attempt;
      return receipt;
    }
    last = detail::nats_error(s, js_code, "publish to '" + subject_text + "'");
    // Only transport trouble is worth another try; a JetStream error (wrong
    // stream expected, message too large) would fail the same way again.
    if (!detail::retryable_status(s) || attempt == options_.max_attempts) break;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2'000));
  }
  return last;
}

}  // namespace idem::nats
