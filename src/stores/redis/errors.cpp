// Redis failures to idem errors; see errors.h.
#include "stores/redis/errors.h"

#include <string>

namespace idem::redis_detail {
namespace {

// The command named in a -NOPERM text: Redis 7 says "... to run the 'wait'
// command"; the quotes are the only stable part.
std::string denied_command(std::string_view text) {
  const auto open = text.find('\'');
  if (open == std::string_view::npos) return {};
  const auto close = text.find('\'', open + 1);
  if (close == std::string_view::npos) return {};
  return std::string(text.substr(open + 1, close - open - 1));
}

}  // namespace

bool is_permission_reply(std::string_view text) noexcept {
  return text.starts_with("NOPERM") || text.find("NOPERM ") != std::string_view::npos ||
         text.find("no permissions to") != std::string_view::npos;
}

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
      if (is_permission_reply(detail)) {
        const std::string command = denied_command(detail);
        std::string what = "redis: permission denied: the ACL user may not run ";
        what += command.empty() ? std::string("a command the store needs") : "'" + command + "'";
        what += " (see the ACL section of docs/redis.md for the commands each topology needs): ";
        what.append(detail);
        return Error(ErrorCode::kInvalidArgument, std::move(what));
      }
      if (detail.starts_with("NOAUTH") || detail.starts_with("WRONGPASS")) {
        return Error(ErrorCode::kInvalidArgument, msg + " (check the user and password in the store URL)");
      }
      if (detail.starts_with("WRONGTYPE")) {
        return Error(ErrorCode::kCorrupt, msg + " (the key holds a value that is not an idem record)");
      }
      if (detail.starts_with("IDEMCORRUPT")) return Error(ErrorCode::kCorrupt, std::move(msg));
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

}  // namespace idem::redis_detail
