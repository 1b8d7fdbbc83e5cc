// Helpers shared by the operations; see operation.h.
#include "stores/redis/operation.h"

#include <algorithm>

#include "stores/redis/replies.h"

namespace idem::redis_detail {

Status reply_status(const redisReply* reply, bool& maybe_executed) {
  if (reply == nullptr) return bad_reply("missing reply");
  if (reply->type != REDIS_REPLY_ERROR) return {};
  const std::string_view text = reply_text(reply);
  if (is_retryable_reply(text)) maybe_executed = false;
  return map_error(Failure::kServerReply, text);
}

Status check_key(std::string_view key) {
  if (key.empty()) return Error(ErrorCode::kInvalidArgument, "redis: empty key");
  return {};
}

Error bad_reply(std::string_view what) {
  return map_error(Failure::kUnexpected, "unexpected reply: " + std::string(what));
}

Result<long long> replicas_acked(const Call& c) {
  long long acked = 0;
  if (c.wait_reply && reply_int(c.wait_reply.get(), acked)) return acked;
  if (c.wait_reply && c.wait_reply->type == REDIS_REPLY_ERROR) {
    return map_error(Failure::kServerReply, reply_text(c.wait_reply.get()));
  }
  return bad_reply("WAIT");
}

std::chrono::milliseconds backoff(const RedisRetryOptions& o, std::uint32_t retry) {
  double d = static_cast<double>(o.base_backoff.count());
  for (std::uint32_t i = 1; i < retry && d < static_cast<double>(o.max_backoff.count()); ++i) d *= 2;
  d = std::min(d, static_cast<double>(o.max_backoff.count()));
  thread_local std::minstd_rand rng(std::random_device{}());
  std::uniform_real_distribution<double> u(0.0, 1.0);
  d = d * (1.0 - o.jitter) + d * o.jitter * u(rng);
  return std::chrono::milliseconds(static_cast<long long>(d));
}

}  // namespace idem::redis_detail
