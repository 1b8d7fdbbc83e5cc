// File: src/stores/redis/blocking_connection.h
//
// BlockingConnection is the control plane's connection: connect, run the
// handshake, then one request at a time with a deadline. It opens every
// connection (the pipelined Connection then takes its socket over) and serves
// Sentinel discovery and Cluster slot-map refreshes, which are rare, short and
// much simpler written straight.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "stores/redis/resp.h"
#include "stores/redis/socket.h"

namespace idem::redis_detail {

// Handshake is what a new connection sends first, in one round trip: AUTH,
// SELECT, SCRIPT LOAD... Every reply must be a non-error.
struct Handshake {
  std::string bytes;
  std::size_t replies = 0;
};

class BlockingConnection {
 public:
  // connect() opens the socket (TLS when tls != nullptr) within
  // connect_timeout and runs `handshake` within command_timeout.
  static Result<std::unique_ptr<BlockingConnection>> connect(const RedisEndpoint& endpoint, const TlsContext* tls,
                                                             std::chrono::milliseconds connect_timeout,
                                                             std::chrono::milliseconds command_timeout,
                                                             const Handshake& handshake);

  // roundtrip() writes `out` (holding `n` commands) and reads n replies. Any
  // error leaves the connection unusable.
  Status roundtrip(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies, Deadline deadline);

  // release() hands the socket over (to a pipelined Connection).
  std::unique_ptr<Socket> release() { return std::move(socket_); }
  const std::string& peer() const { return socket_->peer(); }

 private:
  explicit BlockingConnection(std::unique_ptr<Socket> socket) : socket_(std::move(socket)) {}
  std::unique_ptr<Socket> socket_;
  ReplyReader reader_;
};

}  // namespace idem::redis_detail
