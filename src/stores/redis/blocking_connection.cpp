// The control plane's one-request-at-a-time connection; see blocking_connection.h.
#include "stores/redis/blocking_connection.h"

#include <array>

namespace idem::redis_detail {

Result<std::unique_ptr<BlockingConnection>> BlockingConnection::connect(const RedisEndpoint& endpoint,
                                                                        const TlsContext* tls,
                                                                        std::chrono::milliseconds connect_timeout,
                                                                        std::chrono::milliseconds command_timeout,
                                                                        const Handshake& handshake) {
  IoFailure failure;
  std::unique_ptr<Socket> sock = Socket::connect(endpoint, tls, Clock::now() + connect_timeout, failure);
  if (!sock) return map_error(failure.failure, failure.detail);
  std::unique_ptr<BlockingConnection> conn(new BlockingConnection(std::move(sock)));
  if (handshake.replies > 0) {
    std::vector<ReplyPtr> replies;
    Status st = conn->roundtrip(handshake.bytes, handshake.replies, replies, Clock::now() + command_timeout);
    if (!st) {
      Error e = std::move(st).error();
      if (tls == nullptr && e.code() == ErrorCode::kUnavailable &&
          (e.message().find("closed the connection") != std::string::npos ||
           e.message().find("reset by peer") != std::string::npos)) {
        // A TLS-only port drops a plain-text client at its first bytes.
        return Error(e.code(), e.message() + " during the handshake (does the port expect TLS? use rediss://)");
      }
      return e;
    }
    for (const ReplyPtr& r : replies) {
      if (r->type == REDIS_REPLY_ERROR) return map_error(Failure::kServerReply, reply_text(r.get()));
    }
  }
  return conn;
}

Status BlockingConnection::roundtrip(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies,
                                     Deadline deadline) {
  IoFailure failure;
  if (!socket_->write_all(out, deadline, failure)) return map_error(failure.failure, failure.detail);
  replies.clear();
  replies.reserve(n);
  std::array<char, 16 * 1024> buf{};
  while (replies.size() < n) {
    ReplyPtr reply;
    if (!reader_.next(reply)) return map_error(Failure::kProtocol, "malformed reply: " + reader_.error());
    if (reply) {
      replies.push_back(std::move(reply));
      continue;
    }
    const std::size_t got = socket_->read_some(buf.data(), buf.size(), deadline, failure);
    if (got == 0) return map_error(failure.failure, failure.detail);
    if (!reader_.feed(buf.data(), got)) return map_error(Failure::kProtocol, "out of memory reading a reply");
  }
  return {};
}

}  // namespace idem::redis_detail
