// File: src/integrations/nats/connection_impl.h
//
// ConnectionImpl owns the natsConnection and its JetStream context. Consumers
// and publishers of the same Connection use them concurrently (nats.c makes
// both thread-safe).
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "idem/integrations/nats.h"

namespace idem::nats::detail {

struct ConnectionImpl {
  ConnectionImpl() = default;
  ~ConnectionImpl();
  ConnectionImpl(const ConnectionImpl&) = delete;
  ConnectionImpl& operator=(const ConnectionImpl&) = delete;

  ConnectionOptions options;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::atomic<std::uint64_t> reconnects{0};

  // nats.c reports the close on its callback thread, possibly after
  // natsConnection_Close returned; the destructor waits for it so that no
  // callback runs on a freed ConnectionImpl.
  std::mutex closed_mutex;
  std::condition_variable closed_cv;
  bool closed = false;  // guarded by closed_mutex
};

}  // namespace idem::nats::detail
