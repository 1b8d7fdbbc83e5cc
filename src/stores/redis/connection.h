// File: src/stores/redis/connection.h
//
// The socket layer of the Redis store. hiredis 0.14 (Debian 12) has no TLS and
// its blocking context has one timeout for everything, so hiredis is used only
// as the RESP reply parser (redisReader); sockets, TLS (OpenSSL with memory
// BIOs, so no SIGPIPE and one non-blocking code path for plain and TLS),
// timeouts and pipelining are ours.
//
// Layers, bottom up:
//   Socket      one TCP (optionally TLS) connection, deadline-bounded I/O
//   Connection  a Socket plus a RESP reader: write a batch, read N replies
//   Channel     one Connection shared by many threads: concurrent requests are
//               written together as one pipelined batch (leader/follower)
#pragma once

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "idem/stores/redis.h"

namespace idem::redis_detail {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct ReplyDeleter {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// What went wrong, before it becomes an idem::Error in map_error().
enum class Failure : std::uint8_t {
  kResolve,       // host name did not resolve
  kRefused,       // connection refused / unreachable
  kReset,         // connection reset or closed by the server
  kTimeout,       // deadline passed
  kTls,           // TLS handshake or certificate verification failed
  kProtocol,      // the server sent something that is not RESP
  kServerReply,   // an -ERR style reply; detail is the reply text
  kUnexpected,    // a well-formed reply of the wrong shape
  kCircuitOpen,   // failed fast, no I/O attempted
  kNotConfirmed,  // WAIT did not reach the requested replicas
};

// map_error() is the one place where Redis failures become idem errors:
// refused/reset/TLS/-LOADING/-BUSY/... -> kUnavailable, timeout -> kTimeout,
// anything malformed -> kInternal.
Error map_error(Failure failure, std::string_view detail);

// is_retryable_reply() is true for server error replies that mean "not
// executed, try again later": LOADING, BUSY, TRYAGAIN, MASTERDOWN, READONLY,
// CLUSTERDOWN.
bool is_retryable_reply(std::string_view error_text) noexcept;

// RESP command building without allocation per argument.
void append_command(std::string& out, std::initializer_list<std::string_view> args);
void append_command(std::string& out, const std::vector<std::string_view>& args);

// A shared OpenSSL client context (CA, client certificate, verification mode).
class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>> create(const RedisTlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const noexcept { return ctx_; }
  const RedisTlsOptions& options() const noexcept { return options_; }

 private:
  TlsContext(SSL_CTX* ctx, RedisTlsOptions options) : ctx_(ctx), options_(std::move(options)) {}
  SSL_CTX* ctx_;
  RedisTlsOptions options_;
};

class Socket;

// IoError carries whether the request may have reached the server, which
// decides whether a non-idempotent operation may be retried.
struct IoError {
  Error error;
  bool maybe_executed = false;
};

// Connection is one established, authenticated connection.
class Connection {
 public:
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // connect() opens the socket (TLS when tls != nullptr) and runs `handshake`
  // (AUTH, SELECT, SCRIPT LOAD...) as one pipelined round trip; every
  // handshake reply must not be an error.
  static Result<std::unique_ptr<Connection>> connect(const RedisEndpoint& endpoint, const TlsContext* tls,
                                                     std::chrono::milliseconds connect_timeout,
                                                     std::chrono::milliseconds command_timeout,
                                                     const std::string& handshake, std::size_t handshake_replies);

  // roundtrip() writes `out` (holding `n` commands) and reads n replies.
  // Any error leaves the connection unusable (the caller drops it).
  Status roundtrip(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies, Deadline deadline, bool* sent);

 private:
  Connection(std::unique_ptr<Socket> socket, redisReader* reader);
  std::unique_ptr<Socket> socket_;
  redisReader* reader_;
};

struct ChannelCounters {
  std::atomic<std::uint64_t> round_trips{0};
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> connects{0};
};

// Channel multiplexes one connection among threads (leader/follower): a
// caller appends its request to a queue; if no other thread is doing I/O it
// becomes the leader, takes the whole queue, writes it as one batch, reads the
// replies, hands them out, and promotes the next waiting caller to leader.
// One caller alone does its own I/O (no thread hop); many callers are
// pipelined automatically.
class Channel {
 public:
  // Connects on demand (and again after any failure).
  using Connector = std::function<Result<std::unique_ptr<Connection>>()>;

  Channel(Connector connector, std::chrono::milliseconds command_timeout, ChannelCounters* counters)
      : connector_(std::move(connector)), command_timeout_(command_timeout), counters_(counters) {}

  // execute() sends `out` (n commands) and returns their replies in order.
  // On failure, io_error describes it (replies is then empty).
  bool execute(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies, IoError& io_error);

  // reset() drops the connection so the next call reconnects (after a
  // failover, or a -READONLY reply from a demoted master).
  void reset();

 private:
  struct Request {
    std::string_view out;
    std::size_t n = 0;
    std::vector<ReplyPtr>* replies = nullptr;
    IoError* io_error = nullptr;
    bool ok = false;
    std::atomic<std::uint32_t> state{0};  // 0 waiting, 1 done, 2 lead
  };
  static constexpr std::uint32_t kWaiting = 0;
  static constexpr std::uint32_t kDone = 1;
  static constexpr std::uint32_t kLead = 2;

  void run_batch(std::vector<Request*>& batch);

  Connector connector_;
  std::chrono::milliseconds command_timeout_;
  ChannelCounters* counters_;
  std::mutex mutex_;
  std::deque<Request*> queue_;
  bool leader_active_ = false;
  bool reset_requested_ = false;
  std::unique_ptr<Connection> connection_;  // only the leader touches it
  std::string buffer_;                      // only the leader touches it
};

}  // namespace idem::redis_detail
