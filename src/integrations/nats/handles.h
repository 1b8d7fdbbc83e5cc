// File: src/integrations/nats/handles.h
//
// RAII owners for nats.c objects, and the one place where nats.c status codes
// become idem::Error codes.
#pragma once

#include <nats/nats.h>

#include <memory>
#include <string>
#include <string_view>

#include "idem/core/error.h"

namespace idem::nats::detail {

struct MsgDeleter {
  void operator()(natsMsg* msg) const noexcept { natsMsg_Destroy(msg); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

struct OptionsDeleter {
  void operator()(natsOptions* options) const noexcept { natsOptions_Destroy(options); }
};
using OptionsPtr = std::unique_ptr<natsOptions, OptionsDeleter>;

struct StreamInfoDeleter {
  void operator()(jsStreamInfo* info) const noexcept { jsStreamInfo_Destroy(info); }
};
using StreamInfoPtr = std::unique_ptr<jsStreamInfo, StreamInfoDeleter>;

struct ConsumerInfoDeleter {
  void operator()(jsConsumerInfo* info) const noexcept { jsConsumerInfo_Destroy(info); }
};
using ConsumerInfoPtr = std::unique_ptr<jsConsumerInfo, ConsumerInfoDeleter>;

struct PubAckDeleter {
  void operator()(jsPubAck* ack) const noexcept { jsPubAck_Destroy(ack); }
};
using PubAckPtr = std::unique_ptr<jsPubAck, PubAckDeleter>;

struct MetaDataDeleter {
  void operator()(jsMsgMetaData* meta) const noexcept { jsMsgMetaData_Destroy(meta); }
};
using MetaDataPtr = std::unique_ptr<jsMsgMetaData, MetaDataDeleter>;

struct SubscriptionDeleter {
  void operator()(natsSubscription* sub) const noexcept { natsSubscription_Destroy(sub); }
};
using SubscriptionPtr = std::unique_ptr<natsSubscription, SubscriptionDeleter>;

// nats_error() translates a nats.c status (and JetStream error code, 0 when
// none) into an Error whose message names `what` and nats.c's last error
// text: connection trouble and timeouts are retryable (kUnavailable,
// kTimeout), a missing stream or consumer is kNotFound, bad arguments are
// kInvalidArgument, anything else kInternal.
Error nats_error(natsStatus status, jsErrCode js_code, std::string_view what);

// True for statuses a retry may cure (connection trouble, timeouts, no
// responders while a stream is being created or the server restarts).
bool retryable_status(natsStatus status) noexcept;

}  // namespace idem::nats::detail
