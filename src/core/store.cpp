#include "idem/core/store.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "core/duration_check.h"

namespace idem {
namespace {

// The store API promises that an exception from a completion callback goes
// nowhere: an inline store must not let it unwind into the caller's
// *_async call as if the operation itself had failed.
template <typename Callback, typename Value>
void deliver(Callback& done, Value&& value) noexcept {
  try {
    done(std::forward<Value>(value));
  } catch (...) {  // NOLINT(bugprone-empty-catch): see above
  }
}

Status check_duration(std::string_view field, std::chrono::milliseconds value, std::chrono::milliseconds max) {
  return detail::check_duration(field, value, std::chrono::milliseconds(1), max, ErrorCode::kInvalidArgument);
}

}  // namespace

Status validate_claim_request(const ClaimRequest& request) {
  if (Status s = check_duration("claim request lease", request.lease, kMaxLease); !s) return s;
  return check_duration("claim request ttl", request.ttl, kMaxTtl);
}

Status validate_complete_request(const CompleteRequest& request) {
  return check_duration("complete request ttl", request.ttl, kMaxTtl);
}

Status validate_fail_request(const FailRequest& request) {
  return check_duration("fail request ttl", request.ttl, kMaxTtl);
}

Status validate_lease(std::chrono::milliseconds lease) { return check_duration("extend lease", lease, kMaxLease); }

void Store::claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) {
  deliver(done, claim(request));
}
void Store::claim_many_async(std::span<const ClaimRequest> requests, ResultCallback<std::vector<ClaimOutcome>> done) {
  deliver(done, claim_many(requests));
}
void Store::complete_async(const CompleteRequest& request, StatusCallback done) { deliver(done, complete(request)); }
void Store::fail_async(const FailRequest& request, StatusCallback done) { deliver(done, fail(request)); }
void Store::extend_async(std::string_view key, Token token, std::chrono::milliseconds lease, StatusCallback done) {
  deliver(done, extend(key, token, lease));
}
void Store::checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint, StatusCallback done) {
  deliver(done, this->checkpoint(key, token, checkpoint));
}
void Store::get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) {
  deliver(done, get(key));
}
void Store::remove_async(std::string_view key, ResultCallback<bool> done) { deliver(done, remove(key)); }

Result<std::optional<IdempotencyRecord>> Store::wait_settled(std::string_view key, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = saturating_add(Clock::now(), std::max(timeout, std::chrono::milliseconds(0)));
  // Start fast (most handlers are short), back off to bound the polling load
  // that many waiting duplicates put on the store.
  std::chrono::milliseconds delay(2);
  constexpr std::chrono::milliseconds kMaxDelay(200);
  while (true) {
    auto record = get(key);
    if (!record || !*record) return record;
    const auto now_wall = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    if ((*record)->status != ProcessingStatus::kProcessing || !(*record)->lease_valid(now_wall)) return record;
    const auto now = Clock::now();
    if (now >= deadline) return record;
    std::this_thread::sleep_for(std::min<Clock::duration>(delay, deadline - now));
    delay = std::min(delay * 2, kMaxDelay);
  }
}

Result<std::vector<ClaimOutcome>> Store::claim_many(std::span<const ClaimRequest> requests) {
  // A bad request fails the batch before any claim is written.
  for (const ClaimRequest& request : requests) {
    if (Status valid = validate_claim_request(request); !valid) return std::move(valid).error();
  }
  std::vector<ClaimOutcome> outcomes;
  outcomes.reserve(requests.size());
  for (const ClaimRequest& request : requests) {
    auto outcome = claim(request);
    if (!outcome) return std::move(outcome).error();
    outcomes.push_back(std::move(*outcome));
  }
  return outcomes;
}

std::string default_store_url() {
  // XDG first, so that a service account's state lives where its
  // administrator expects; /tmp only when there is no home at all.
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/') {
    return std::string("sqlite://") + state + "/idem/idem.db";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string("sqlite://") + home + "/.local/state/idem/idem.db";
  }
  return "sqlite:///tmp/idem-" + std::to_string(::getuid()) + "/idem.db";
}

}  // namespace idem
