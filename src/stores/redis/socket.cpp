// Non-blocking TCP and TLS through memory BIOs; see socket.h.
#include "stores/redis/socket.h"

#include <arpa/inet.h>
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
#include <cstring>

namespace idem::redis_detail {
namespace {

std::string errno_text(int err) {
  std::array<char, 256> buf{};
  // GNU strerror_r returns the message pointer (which may not be buf).
  const char* msg = strerror_r(err, buf.data(), buf.size());
  return msg;
}

int remaining_ms(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left + 1, 1'000'000));
}

constexpr int kChunk = 1 << 30;

}  // namespace

Socket::~Socket() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIOs too
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<Socket> Socket::connect(const RedisEndpoint& ep, const TlsContext* tls, Deadline deadline,
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
  const std::string where = ep.host + ":" + port;
  failure = {Failure::kRefused, "no address for '" + ep.host + "'"};
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    std::unique_ptr<Socket> sock(new Socket(fd, where));
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        failure = {Failure::kRefused, "connect to " + where + ": " + errno_text(errno)};
        continue;
      }
      pollfd p{fd, POLLOUT, 0};
      const int rc = ::poll(&p, 1, remaining_ms(deadline));
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

bool Socket::wait(short events, Deadline deadline, IoFailure& failure, const char* what) {
  for (;;) {
    pollfd p{fd_, events, 0};
    const int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) {
      failure = {Failure::kTimeout, std::string(what)};
      return false;
    }
    if (errno != EINTR) {
      failure = {Failure::kReset, "poll: " + errno_text(errno)};
      return false;
    }
  }
}

bool Socket::send_plain(std::string_view data, std::size_t& consumed, IoFailure& failure) {
  consumed = 0;
  while (consumed < data.size()) {
    const ssize_t n = ::send(fd_, data.data() + consumed, data.size() - consumed, MSG_NOSIGNAL);
    if (n >= 0) {
      consumed += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    failure = {Failure::kReset, "send to " + peer_ + ": " + errno_text(errno)};
    return false;
  }
  return true;
}

bool Socket::recv_plain(char* buf, std::size_t cap, std::size_t& n, IoFailure& failure) {
  n = 0;
  for (;;) {
    const ssize_t got = ::recv(fd_, buf, cap, 0);
    if (got > 0) {
      n = static_cast<std::size_t>(got);
      return true;
    }
    if (got == 0) {
      failure = {Failure::kReset, peer_ + " closed the connection"};
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    failure = {Failure::kReset, "recv from " + peer_ + ": " + errno_text(errno)};
    return false;
  }
}

void Socket::drain_tls_output() {
  std::array<char, 16 * 1024> buf{};
  while (BIO_ctrl_pending(wbio_) > 0) {
    const int n = BIO_read(wbio_, buf.data(), static_cast<int>(buf.size()));
    if (n <= 0) break;
    tls_out_.append(buf.data(), static_cast<std::size_t>(n));
  }
}

bool Socket::flush(IoFailure& failure) {
  if (tls_out_.empty()) return true;
  std::size_t sent = 0;
  const bool ok = send_plain(tls_out_, sent, failure);
  tls_out_.erase(0, sent);
  return ok;
}

bool Socket::send(std::string_view data, std::size_t& consumed, IoFailure& failure) {
  if (ssl_ == nullptr) return send_plain(data, consumed, failure);
  consumed = 0;
  while (consumed < data.size()) {
    const int chunk = static_cast<int>(std::min<std::size_t>(data.size() - consumed, kChunk));
    const int rc = SSL_write(ssl_, data.data() + consumed, chunk);
    if (rc <= 0) {
      failure = {Failure::kTls, "TLS write to " + peer_ + ": " + openssl_errors()};
      return false;
    }
    consumed += static_cast<std::size_t>(rc);
    drain_tls_output();
  }
  return flush(failure);
}

bool Socket::recv(char* buf, std::size_t cap, std::size_t& n, IoFailure& failure) {
  if (ssl_ == nullptr) return recv_plain(buf, cap, n, failure);
  n = 0;
  for (;;) {
    const int rc = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(cap, kChunk)));
    // A read may produce TLS output (TLS 1.3 key updates): send it along.
    drain_tls_output();
    if (rc > 0) {
      n = static_cast<std::size_t>(rc);
      return flush(failure);
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_ZERO_RETURN) {
      failure = {Failure::kReset, peer_ + " closed the TLS connection"};
      return false;
    }
    if (err != SSL_ERROR_WANT_READ) {
      failure = {Failure::kTls, "TLS read from " + peer_ + ": " + openssl_errors()};
      return false;
    }
    if (!flush(failure)) return false;
    std::array<char, 16 * 1024> raw{};
    std::size_t got = 0;
    if (!recv_plain(raw.data(), raw.size(), got, failure)) return false;
    if (got == 0) return true;  // nothing more now
    BIO_write(rbio_, raw.data(), static_cast<int>(got));
  }
}

bool Socket::peer_closed() const {
  char c = 0;
  const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool Socket::write_all(std::string_view data, Deadline deadline, IoFailure& failure) {
  std::size_t consumed = 0;
  if (!send(data, consumed, failure)) return false;
  data.remove_prefix(consumed);
  while (!data.empty() || has_pending()) {
    if (!wait(POLLOUT, deadline, failure, "no answer within the command timeout")) return false;
    if (!flush(failure)) return false;
    if (data.empty()) continue;
    if (!send(data, consumed, failure)) return false;
    data.remove_prefix(consumed);
  }
  return true;
}

std::size_t Socket::read_some(char* buf, std::size_t cap, Deadline deadline, IoFailure& failure, bool expect_wait) {
  if (expect_wait && ssl_ == nullptr && !wait(POLLIN, deadline, failure, "no answer within the command timeout")) {
    return 0;
  }
  for (;;) {
    std::size_t n = 0;
    if (!recv(buf, cap, n, failure)) return 0;
    if (n > 0) return n;
    const short events = has_pending() ? static_cast<short>(POLLIN | POLLOUT) : static_cast<short>(POLLIN);
    if (!wait(events, deadline, failure, "no answer within the command timeout")) return 0;
  }
}

bool Socket::start_tls(const TlsContext& tls, const std::string& host, Deadline deadline, IoFailure& failure) {
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
  std::size_t received = 0;  // bytes of the server's answer so far
  std::string first_bytes;   // its beginning, to recognise a plain-text server
  for (;;) {
    const int rc = SSL_do_handshake(ssl_);
    drain_tls_output();
    while (has_pending()) {
      if (!flush(failure)) return false;
      if (has_pending() && !wait(POLLOUT, deadline, failure, "TLS handshake timed out")) return false;
    }
    if (rc == 1) return true;
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) {
      std::array<char, 16 * 1024> raw{};
      std::size_t got = 0;
      if (!recv_plain(raw.data(), raw.size(), got, failure)) {
        if (received == 0) failure.detail += " during the TLS handshake (does " + peer_ + " speak TLS?)";
        return false;
      }
      if (got == 0) {
        if (!wait(POLLIN, deadline, failure, "")) {
          if (failure.failure == Failure::kTimeout) {
            // A plain Redis port reads the ClientHello as the start of an
            // inline command and waits for the rest: say so, instead of a
            // bare timeout.
            failure.detail = "TLS handshake with " + peer_ + " got " +
                             (received == 0 ? std::string("no answer") : std::string("no complete answer")) +
                             " within the connect timeout; the port may not speak TLS (a plain redis:// port?)";
          }
          return false;
        }
        continue;
      }
      if (first_bytes.size() < 8) first_bytes.append(raw.data(), std::min<std::size_t>(got, 8 - first_bytes.size()));
      received += got;
      BIO_write(rbio_, raw.data(), static_cast<int>(got));
      continue;
    }
    std::string why = openssl_errors();
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) why += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
    if (!first_bytes.empty() && (first_bytes[0] == '-' || first_bytes[0] == '+')) {
      why += " (the server answered in plain RESP: " + peer_ + " does not speak TLS; use redis://)";
    }
    failure = {Failure::kTls, "TLS handshake with " + host + ": " + why};
    return false;
  }
}

}  // namespace idem::redis_detail
