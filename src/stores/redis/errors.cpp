// Redis failures to idem errors; see errors.h.
#include "stores/redis/errors.h"

#include <array>
#include <string>
#include <utility>

#include "stores/redis/scripts.h"

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

// What each script calls, for the ACL message when a script is refused one
// of them (Redis names only the script's SHA-1 then).
std::string script_needs(std::string_view text) {
  static constexpr std::array<std::pair<ScriptId, std::string_view>, kScriptCount> kNeeds{{
      {kClaim, "the claim script calls TIME, GET, SET and PEXPIRETIME"},
      {kFinish, "the complete/fail script calls GET, TIME, SET and PUBLISH (channel idem:settled:<key>)"},
      {kSwap, "the complete/fail swap script calls GET and SET"},
      {kExtend, "the extend script calls GET, TIME, SET and PEXPIRETIME"},
      {kCheckpoint, "the checkpoint script calls GET, SET and PEXPIRETIME"},
      {kGet, "the get script calls GET and PEXPIRETIME"},
      {kWatch, "the wait_settled script calls GET, TIME, SET and PEXPIRETIME"},
      {kJsonOwner, "the JSON record script calls GET, TIME, SET and PUBLISH (channel idem:settled:<key>)"},
  }};
  for (const auto& [id, needs] : kNeeds) {
    if (text.find(scripts()[id].sha) != std::string_view::npos) return std::string(needs);
  }
  return "a script of the store was refused a command";
}

}  // namespace

bool is_permission_reply(std::string_view text) noexcept {
  return text.starts_with("NOPERM") || text.find("NOPERM ") != std::string_view::npos ||
         text.find("no permissions to") != std::string_view::npos ||
         text.find("can't run this command or subcommand") != std::string_view::npos;
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
        std::string what = "redis: permission denied: ";
        if (detail.find("one of the keys") != std::string_view::npos) {
          what +=
              "the ACL user may not access the store's keys (its key pattern must cover the key prefix, e.g. "
              "~idempotency:*)";
        } else if (detail.find("one of the channels") != std::string_view::npos) {
          what += "the ACL user may not use the channel wait_settled() listens on (allow &idem:settled:*)";
        } else if (detail.find("can't run this command or subcommand") != std::string_view::npos) {
          what += "the ACL user may not run a command a script needs: " + script_needs(detail);
        } else {
          const std::string command = denied_command(detail);
          what += "the ACL user may not run ";
          what += command.empty() ? std::string("a command the store needs") : "'" + command + "'";
        }
        what += " (docs/redis.md lists the ACL each topology needs); Redis said: ";
        what.append(detail);
        return Error(ErrorCode::kInvalidConfiguration, std::move(what));
      }
      if (detail.starts_with("NOAUTH") || detail.starts_with("WRONGPASS")) {
        return Error(ErrorCode::kInvalidConfiguration, msg + " (check the user and password in the store URL)");
      }
      if (detail.starts_with("WRONGTYPE")) {
        return Error(ErrorCode::kCorrupt, msg + " (the key holds a value that is not an idem record)");
      }
      if (detail.starts_with("IDEMCORRUPT")) return Error(ErrorCode::kCorrupt, std::move(msg));
      // A WAIT cut short because the server changed role (a master demoted
      // in a failover): an outage, though the write before it did run.
      if (detail.starts_with("UNBLOCKED")) return Error(ErrorCode::kUnavailable, std::move(msg));
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
