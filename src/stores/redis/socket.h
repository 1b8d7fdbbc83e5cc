// File: src/stores/redis/socket.h
//
// Socket is one TCP connection, optionally TLS, always non-blocking. TLS runs
// through OpenSSL memory BIOs, so every byte, plain or encrypted, goes through
// our own send()/recv() (MSG_NOSIGNAL: no SIGPIPE) and one code path serves
// both: the event loop uses the non-blocking calls, and a caller that drives
// a connection itself (or the control plane) uses the deadline-bounded ones,
// which poll() the same descriptor.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "stores/redis/errors.h"
#include "stores/redis/tls_context.h"

namespace idem::redis_detail {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// IoFailure is a failure while doing I/O; map_error() makes it an Error.
struct IoFailure {
  Failure failure = Failure::kReset;
  std::string detail;
};

class Socket {
 public:
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // connect() resolves, connects and runs the TLS handshake (when tls is
  // set), all bounded by `deadline`. nullptr and `failure` on error.
  static std::unique_ptr<Socket> connect(const RedisEndpoint& endpoint, const TlsContext* tls, Deadline deadline,
                                         IoFailure& failure);

  int fd() const noexcept { return fd_; }
  const std::string& peer() const noexcept { return peer_; }

  // --- non-blocking (the event loop) ---
  // send() takes `data`; `consumed` says how much. TLS takes everything at
  // once and keeps the encrypted bytes the kernel would not take; see
  // has_pending(). False on a broken connection.
  bool send(std::string_view data, std::size_t& consumed, IoFailure& failure);
  // flush() sends encrypted bytes left over by send() or by a TLS read.
  bool flush(IoFailure& failure);
  bool has_pending() const noexcept { return !tls_out_.empty(); }
  // recv() reads what is there without waiting: n == 0 means "nothing now".
  // False when the peer closed or the connection broke.
  bool recv(char* buf, std::size_t cap, std::size_t& n, IoFailure& failure);

  // peer_closed() is true when the peer has closed the connection (checked
  // without consuming anything).
  bool peer_closed() const;

  // --- deadline-bounded (a caller driving the connection itself) ---
  bool write_all(std::string_view data, Deadline deadline, IoFailure& failure);
  // read_some() waits for at least one byte; 0 on failure. `expect_wait`:
  // the caller just sent a request, so a plain socket polls before its first
  // recv (saving the recv that would only say "nothing yet").
  std::size_t read_some(char* buf, std::size_t cap, Deadline deadline, IoFailure& failure, bool expect_wait = false);

 private:
  Socket(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  bool wait(short events, Deadline deadline, IoFailure& failure, const char* what);
  bool start_tls(const TlsContext& tls, const std::string& host, Deadline deadline, IoFailure& failure);
  bool send_plain(std::string_view data, std::size_t& consumed, IoFailure& failure);
  bool recv_plain(char* buf, std::size_t cap, std::size_t& n, IoFailure& failure);
  void drain_tls_output();

  int fd_ = -1;
  std::string peer_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  std::string tls_out_;  // encrypted bytes not yet taken by the kernel
};

}  // namespace idem::redis_detail
