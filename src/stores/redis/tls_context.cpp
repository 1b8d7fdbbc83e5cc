// The shared OpenSSL client context; see tls_context.h.
#include "stores/redis/tls_context.h"

#include <openssl/err.h>

#include <array>
#include <string>

namespace idem::redis_detail {

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

Result<std::shared_ptr<TlsContext>> TlsContext::create(const RedisTlsOptions& options) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Error(ErrorCode::kInternal, "redis: TLS: SSL_CTX_new failed: " + openssl_errors());
  std::shared_ptr<TlsContext> out(new TlsContext(ctx, options));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (options.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!options.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
        return Error(ErrorCode::kInvalidConfiguration,
                     "redis: TLS: cannot load CA file '" + options.ca_file + "': " + openssl_errors());
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return Error(ErrorCode::kInvalidConfiguration, "redis: TLS: no default CA store: " + openssl_errors());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "redis: TLS: give both a client certificate and its key, or neither");
  }
  if (!options.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
      return Error(ErrorCode::kInvalidConfiguration,
                   "redis: TLS: cannot load client certificate '" + options.cert_file + "': " + openssl_errors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return Error(ErrorCode::kInvalidConfiguration,
                   "redis: TLS: cannot load client key '" + options.key_file + "': " + openssl_errors());
    }
  }
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

}  // namespace idem::redis_detail
