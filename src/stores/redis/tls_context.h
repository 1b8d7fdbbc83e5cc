// File: src/stores/redis/tls_context.h
//
// TlsContext is the OpenSSL client context shared by every connection of a
// store: trusted CAs, an optional client certificate, the verification mode.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "idem/core/error.h"
#include "idem/stores/redis.h"

namespace idem::redis_detail {

class TlsContext {
 public:
  // create() loads the CA file and the client certificate; a file that cannot
  // be read is kInvalidConfiguration, so a bad URL fails at open(), not later.
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

// openssl_errors() drains OpenSSL's error queue into one line.
std::string openssl_errors();

}  // namespace idem::redis_detail
