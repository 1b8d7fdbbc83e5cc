// Socket, TLS, RESP reading and the leader/follower channel. See connection.h.
#include "stores/redis/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace idem::redis_detail {
namespace {

std::string errno_text(int err) {
  std::array<char, 256> buf{};
  // GNU strerror_r returns the message pointer (which may not be buf).
  const char* msg = strerror_r(err, buf.data(), buf.size());
  return msg;
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!out.empty()) out += "; ";
    out += buf.data();
  }
  return out.empty() ? std::string("unknown TLS error") : out;
}

int remaining_ms(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left, 1'000'000));
}

// A failure while doing I/O; converted to an Error by the caller.
struct IoFailure {
  Failure failure;
  std::string detail;
};

}  // namespace

Error map_error(Failure failure, std::string_view detail) {
  std::string msg = "redis: ";
  msg.append(detail);
  switch (failure) {
    case Failure::kResolve:
    case Failure::kRefused:
    case Failure::kReset:
    case Failure::kTls:
    case Failure::kCircuitOpen:
    case Failure::kNotConfirmed: return Error(ErrorCode::kUnavailable, std::move(msg));
    case Failure::kTimeout: return Error(ErrorCode::kTimeout, std::move(msg));
    case Failure::kServerReply:
      if (is_retryable_reply(detail)) return Error(ErrorCode::kUnavailable, std::move(msg));
      if (detail.starts_with("NOAUTH") || detail.starts_with("WRONGPASS") || detail.starts_with("NOPERM")) {
        return Error(ErrorCode::kInvalidArgument, msg + " (check the user and password in the store URL)");
      }
      return Error(ErrorCode::kInternal, std::move(msg));
    case Failure::kProtocol:
    case Failure::kUnexpected:
    default: return Error(ErrorCode::kInternal, std::move(msg));
  }
}

bool is_retryable_reply(std::string_view text) noexcept {
  for (std::string_view prefix : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"}) {
    if (text.starts_with(prefix)) return true;
  }
  return false;
}

namespace {
void append_decimal(std::string& out, std::size_t value) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  (void)ec;
  out.append(buf.data(), end);
}
template <typename Range>
void append_command_impl(std::string& out, const Range& args) {
  out += '*';
  append_decimal(out, std::size(args));
  out += "\r\n";
  for (std::string_view arg : args) {
    out += '$';
    append_decimal(out, arg.size());
    out += "\r\n";
    out.append(arg);
    out += "\r\n";
  }
}
}  // namespace

void append_command(std::string& out, std::initializer_list<std::string_view> args) { append_command_impl(out, args); }
void append_command(std::string& out, const std::vector<std::string_view>& args) { append_command_impl(out, args); }

// ---------------------------------------------------------------------------
// TlsContext

Result<std::shared_ptr<TlsContext>> TlsContext::create(const RedisTlsOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Error(ErrorCode::kInternal, "redis: TLS: SSL_CTX_new failed: " + openssl_errors());
  std::shared_ptr<TlsContext> out(new TlsContext(ctx, options));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (options.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!options.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
        return Error(ErrorCode::kInvalidArgument,
                     "redis: TLS: cannot load CA file '" + options.ca_file + "': " + openssl_errors());
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return Error(ErrorCode::kInvalidArgument, "redis: TLS: no default CA store: " + openssl_errors());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Error(ErrorCode::kInvalidArgument, "redis: TLS: give both a client certificate and its key, or neither");
  }
  if (!options.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   "redis: TLS: cannot load client certificate '" + options.cert_file + "': " + openssl_errors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   "redis: TLS: cannot load client key '" + options.key_file + "': " + openssl_errors());
    }
  }
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// ---------------------------------------------------------------------------
// Socket: non-blocking fd; TLS through memory BIOs so that every byte goes
// through our send()/recv() (MSG_NOSIGNAL, poll with deadline).

class Socket {
 public:
  ~Socket() {
    if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIOs too
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  static std::unique_ptr<Socket> connect(const RedisEndpoint& ep, const TlsContext* tls, Deadline deadline,
                                         IoFailure& failure) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const std::string port = std::to_string(ep.port);
    if (int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &list); rc != 0) {
      failure = {Failure::kResolve, "cannot resolve '" + ep.host + "': " + gai_strerror(rc)};
      return nullptr;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(list, &::freeaddrinfo);
    failure = {Failure::kRefused, "no address for '" + ep.host + "'"};
    for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      std::unique_ptr<Socket> sock(new Socket(fd));
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const std::string where = ep.host + ":" + port;
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
          failure = {Failure::kRefused, "connect to " + where + ": " + errno_text(errno)};
          continue;
        }
        pollfd p{fd, POLLOUT, 0};
        int rc = ::poll(&p, 1, remaining_ms(deadline));
        if (rc == 0) {
          failure = {Failure::kTimeout, "connect to " + where + " timed out"};
          return nullptr;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (rc < 0 || err != 0) {
          failure = {Failure::kRefused, "connect to " + where + ": " + errno_text(rc < 0 ? errno : err)};
          continue;
        }
      }
      if (tls != nullptr && !sock->start_tls(*tls, ep.host, deadline, failure)) return nullptr;
      return sock;
    }
    return nullptr;
  }

  bool write_all(std::string_view data, Deadline deadline, IoFailure& failure) {
    if (ssl_ == nullptr) return send_plain(data, deadline, failure);
    while (!data.empty()) {
      const int chunk = static_cast<int>(std::min<std::size_t>(data.size(), 1 << 30));
      const int rc = SSL_write(ssl_, data.data(), chunk);
      if (rc > 0) {
        data.remove_prefix(static_cast<std::size_t>(rc));
        if (!flush_tls(deadline, failure)) return false;
        continue;
      }
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ) {
        if (!flush_tls(deadline, failure) || !fill_tls(deadline, failure)) return false;
        continue;
      }
      failure = {Failure::kTls, "TLS write: " + openssl_errors()};
      return false;
    }
    return true;
  }

  // Reads at least one byte (or fails).
  std::size_t read_some(char* buf, std::size_t cap, Deadline deadline, IoFailure& failure) {
    if (ssl_ == nullptr) return recv_plain(buf, cap, deadline, failure);
    for (;;) {
      const int rc = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(cap, 1 << 30)));
      if (rc > 0) return static_cast<std::size_t>(rc);
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ) {
        if (!flush_tls(deadline, failure) || !fill_tls(deadline, failure)) return 0;
        continue;
      }
      if (err == SSL_ERROR_ZERO_RETURN) {
        failure = {Failure::kReset, "the server closed the TLS connection"};
      } else {
        failure = {Failure::kTls, "TLS read: " + openssl_errors()};
      }
      return 0;
    }
  }

 private:
  explicit Socket(int fd) : fd_(fd) {}

  bool wait(short events, Deadline deadline, IoFailure& failure) {
    for (;;) {
      pollfd p{fd_, events, 0};
      const int rc = ::poll(&p, 1, remaining_ms(deadline));
      if (rc > 0) return true;
      if (rc == 0) {
        failure = {Failure::kTimeout, "no answer within the command timeout"};
        return false;
      }
      if (errno != EINTR) {
        failure = {Failure::kReset, "poll: " + errno_text(errno)};
        return false;
      }
    }
  }

  bool send_plain(std::string_view data, Deadline deadline, IoFailure& failure) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n >= 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!wait(POLLOUT, deadline, failure)) return false;
        continue;
      }
      failure = {Failure::kReset, "send: " + errno_text(errno)};
      return false;
    }
    return true;
  }

  std::size_t recv_plain(char* buf, std::size_t cap, Deadline deadline, IoFailure& failure) {
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, cap, 0);
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) {
        failure = {Failure::kReset, "the server closed the connection"};
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!wait(POLLIN, deadline, failure)) return 0;
        continue;
      }
      failure = {Failure::kReset, "recv: " + errno_text(errno)};
      return 0;
    }
  }

  bool start_tls(const TlsContext& tls, const std::string& host, Deadline deadline, IoFailure& failure) {
    ssl_ = SSL_new(tls.get());
    BIO* rbio = BIO_new(BIO_s_mem());
    BIO* wbio = BIO_new(BIO_s_mem());
    if (ssl_ == nullptr || rbio == nullptr || wbio == nullptr) {
      BIO_free(rbio);
      BIO_free(wbio);
      failure = {Failure::kTls, "TLS setup: " + openssl_errors()};
      return false;
    }
    SSL_set_bio(ssl_, rbio, wbio);
    rbio_ = rbio;
    wbio_ = wbio;
    const RedisTlsOptions& opt = tls.options();
    const std::string& name = opt.sni.empty() ? host : opt.sni;
    in6_addr addr6{};
    in_addr addr4{};
    const bool is_ip =
        ::inet_pton(AF_INET, name.c_str(), &addr4) == 1 || ::inet_pton(AF_INET6, name.c_str(), &addr6) == 1;
    if (!is_ip) {
      // SSL_set_tlsext_host_name() is a macro with a C cast; call what it expands to.
      SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(name.c_str()));
    }
    if (opt.verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      const int rc = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      if (rc != 1) {
        failure = {Failure::kTls, "TLS: cannot set the expected server name: " + openssl_errors()};
        return false;
      }
    }
    SSL_set_connect_state(ssl_);
    for (;;) {
      const int rc = SSL_do_handshake(ssl_);
      if (!flush_tls(deadline, failure)) return false;
      if (rc == 1) return true;
      const int err = SSL_get_error(ssl_, rc);
      if (err == SSL_ERROR_WANT_READ) {
        if (!fill_tls(deadline, failure)) return false;
        continue;
      }
      std::string why = openssl_errors();
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) why += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
      failure = {Failure::kTls, "TLS handshake with " + host + ": " + why};
      return false;
    }
  }

  // Sends whatever OpenSSL has queued in the write BIO.
  bool flush_tls(Deadline deadline, IoFailure& failure) {
    std::array<char, 16 * 1024> buf{};
    while (BIO_ctrl_pending(wbio_) > 0) {
      const int n = BIO_read(wbio_, buf.data(), static_cast<int>(buf.size()));
      if (n <= 0) break;
      if (!send_plain(std::string_view(buf.data(), static_cast<std::size_t>(n)), deadline, failure)) return false;
    }
    return true;
  }

  // Moves bytes from the socket into the read BIO.
  bool fill_tls(Deadline deadline, IoFailure& failure) {
    std::array<char, 16 * 1024> buf{};
    const std::size_t n = recv_plain(buf.data(), buf.size(), deadline, failure);
    if (n == 0) return false;
    BIO_write(rbio_, buf.data(), static_cast<int>(n));
    return true;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
};

// ---------------------------------------------------------------------------
// Connection

Connection::Connection(std::unique_ptr<Socket> socket, redisReader* reader)
    : socket_(std::move(socket)), reader_(reader) {}

Connection::~Connection() {
  if (reader_ != nullptr) redisReaderFree(reader_);
}

Result<std::unique_ptr<Connection>> Connection::connect(const RedisEndpoint& endpoint, const TlsContext* tls,
                                                        std::chrono::milliseconds connect_timeout,
                                                        std::chrono::milliseconds command_timeout,
                                                        const std::string& handshake, std::size_t handshake_replies) {
  IoFailure failure{Failure::kRefused, ""};
  std::unique_ptr<Socket> sock = Socket::connect(endpoint, tls, Clock::now() + connect_timeout, failure);
  if (!sock) return map_error(failure.failure, failure.detail);
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) return Error(ErrorCode::kInternal, "redis: out of memory creating a reply reader");
  std::unique_ptr<Connection> conn(new Connection(std::move(sock), reader));
  if (handshake_replies > 0) {
    std::vector<ReplyPtr> replies;
    bool sent = false;
    Status st = conn->roundtrip(handshake, handshake_replies, replies, Clock::now() + command_timeout, &sent);
    if (!st) return std::move(st).error();
    for (const ReplyPtr& r : replies) {
      if (r->type == REDIS_REPLY_ERROR) {
        return map_error(Failure::kServerReply, std::string_view(r->str, r->len));
      }
    }
  }
  return conn;
}

Status Connection::roundtrip(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies, Deadline deadline,
                             bool* sent) {
  IoFailure failure{Failure::kReset, ""};
  *sent = true;  // a partial write may already have reached the server
  if (!socket_->write_all(out, deadline, failure)) return map_error(failure.failure, failure.detail);
  replies.clear();
  replies.reserve(n);
  std::array<char, 16 * 1024> buf{};
  while (replies.size() < n) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      return map_error(Failure::kProtocol, std::string("malformed reply: ") + reader_->errstr);
    }
    if (raw != nullptr) {
      replies.emplace_back(static_cast<redisReply*>(raw));
      continue;
    }
    const std::size_t got = socket_->read_some(buf.data(), buf.size(), deadline, failure);
    if (got == 0) return map_error(failure.failure, failure.detail);
    if (redisReaderFeed(reader_, buf.data(), got) != REDIS_OK) {
      return map_error(Failure::kProtocol, std::string("malformed reply: ") + reader_->errstr);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// Channel

bool Channel::execute(std::string_view out, std::size_t n, std::vector<ReplyPtr>& replies, IoError& io_error) {
  Request req;
  req.out = out;
  req.n = n;
  req.replies = &replies;
  req.io_error = &io_error;
  bool lead = false;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(&req);
    if (!leader_active_) {
      leader_active_ = true;
      lead = true;
    }
  }
  if (!lead) {
    req.state.wait(kWaiting, std::memory_order_acquire);
    if (req.state.load(std::memory_order_acquire) == kDone) return req.ok;
    // Promoted: our request is still at the front of the queue.
  }
  std::vector<Request*> batch;
  {
    std::lock_guard lock(mutex_);
    // Bound the batch so one leader does not hold everyone for a huge write.
    std::size_t commands = 0;
    while (!queue_.empty() && (batch.empty() || commands + queue_.front()->n <= 4096)) {
      commands += queue_.front()->n;
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
  }
  run_batch(batch);
  Request* next = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) {
      leader_active_ = false;
    } else {
      next = queue_.front();
    }
  }
  if (next != nullptr) {
    next->state.store(kLead, std::memory_order_release);
    next->state.notify_one();
  }
  // Our own request was in the batch (it was queued before we led).
  return req.ok;
}

void Channel::reset() {
  std::lock_guard lock(mutex_);
  reset_requested_ = true;
}

void Channel::run_batch(std::vector<Request*>& batch) {
  {
    std::lock_guard lock(mutex_);
    if (reset_requested_) {
      reset_requested_ = false;
      connection_.reset();
    }
  }
  std::size_t total = 0;
  buffer_.clear();
  for (Request* r : batch) {
    total += r->n;
    buffer_.append(r->out);
  }
  Error error;
  bool failed = false;
  bool sent = false;
  std::vector<ReplyPtr> replies;
  if (!connection_) {
    Result<std::unique_ptr<Connection>> conn = connector_();
    if (conn) {
      connection_ = std::move(*conn);
      counters_->connects.fetch_add(1, std::memory_order_relaxed);
    } else {
      error = std::move(conn).error();
      failed = true;
    }
  }
  if (!failed) {
    counters_->round_trips.fetch_add(1, std::memory_order_relaxed);
    counters_->commands.fetch_add(total, std::memory_order_relaxed);
    Status st = connection_->roundtrip(buffer_, total, replies, Clock::now() + command_timeout_, &sent);
    if (!st) {
      error = std::move(st).error();
      failed = true;
      connection_.reset();  // never reuse a connection whose replies may be out of step
    }
  }
  std::size_t pos = 0;
  for (Request* r : batch) {
    if (failed) {
      r->ok = false;
      r->io_error->error = error;
      r->io_error->maybe_executed = sent;
    } else {
      r->replies->clear();
      for (std::size_t i = 0; i < r->n; ++i) r->replies->push_back(std::move(replies[pos++]));
      r->ok = true;
    }
  }
  // Wake followers last: after notify, a follower's Request may vanish.
  for (Request* r : batch) {
    if (r->state.load(std::memory_order_relaxed) == kWaiting) {
      // The leader's own request is never waited on; marking it done is harmless.
      r->state.store(kDone, std::memory_order_release);
      r->state.notify_one();
    }
  }
}

}  // namespace idem::redis_detail
