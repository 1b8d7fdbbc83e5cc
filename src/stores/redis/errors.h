// File: src/stores/redis/errors.h
//
// The one place where Redis failures become idem errors: transport failures
// (refused, reset, TLS, timeout), server error replies (-LOADING, -NOPERM,
// -WRONGTYPE...) and malformed replies.
#pragma once

#include <cstdint>
#include <string_view>

#include "idem/core/error.h"

namespace idem::redis_detail {

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
// -NOAUTH/-WRONGPASS/-NOPERM -> kInvalidConfiguration (the deployment is
// wrong, not the message: retrying cannot help and dead-lettering would be
// wrong; a -NOPERM message names what the ACL user may not do),
// -WRONGTYPE and undecodable records -> kCorrupt, anything malformed ->
// kInternal.
Error map_error(Failure failure, std::string_view detail);

// is_retryable_reply() is true for server error replies that mean "not
// executed, try again later": LOADING, BUSY, TRYAGAIN, MASTERDOWN, READONLY,
// CLUSTERDOWN.
bool is_retryable_reply(std::string_view error_text) noexcept;

// is_permission_reply() is true for -NOPERM, also when a script relays it
// ("ERR ... NOPERM ..." / "-NOPERM ... script ...").
bool is_permission_reply(std::string_view error_text) noexcept;

}  // namespace idem::redis_detail
