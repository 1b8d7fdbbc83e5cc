#include "idem/core/checker.h"

#include <algorithm>
#include <thread>

#include "idem/core/tracing.h"

namespace idem {
namespace {

using SteadyClock = std::chrono::steady_clock;

}  // namespace

Status CheckerOptions::validate() const {
  if (ttl <= std::chrono::milliseconds::zero()) return Error(ErrorCode::kInvalidArgument, "ttl must be positive");
  if (lease <= std::chrono::milliseconds::zero()) return Error(ErrorCode::kInvalidArgument, "lease must be positive");
  if (max_result_bytes == 0) return Error(ErrorCode::kInvalidArgument, "max_result_bytes must be positive");
  if (key.prefix.find('\0') != std::string::npos || key.scope.find('\0') != std::string::npos) {
    return Error(ErrorCode::kInvalidArgument, "key prefix and scope must not contain NUL bytes");
  }
  return {};
}

IdempotencyChecker::IdempotencyChecker(std::shared_ptr<Store> store, CheckerOptions options)
    : store_(std::move(store)), options_(std::move(options)) {
  if (!store_) throw IdemError(Error(ErrorCode::kInvalidArgument, "IdempotencyChecker needs a store"));
  options_.validate().value();
}

Result<std::string> IdempotencyChecker::key_for(const Envelope& envelope) const {
  return build_key(envelope, options_.key);
}
Result<std::string> IdempotencyChecker::key_for(const Envelope& envelope, const KeyOptions& key_options) const {
  return build_key(envelope, key_options);
}
Result<std::string> IdempotencyChecker::key_for(std::string_view idempotency_key) const {
  return build_key(idempotency_key, options_.key);
}

void IdempotencyChecker::observe_call(StoreOp op, SteadyClock::time_point start, const Error* error) const {
  if (!options_.observer) return;
  options_.observer->on_store_call(store_->kind(), op, SteadyClock::now() - start, error);
  const CircuitState circuit = store_->circuit_state();
  if (reported_circuit_.exchange(circuit, std::memory_order_relaxed) != circuit) {
    options_.observer->on_circuit_state(store_->kind(), circuit);
  }
}

ClaimRequest IdempotencyChecker::make_request(const Envelope& envelope, std::string_view key) const {
  ClaimRequest request;
  request.key = key;
  request.event_id = envelope.event_id;
  request.event_type = envelope.event_type;
  request.lease = options_.lease;
  request.ttl = options_.ttl;
  return request;
}

Result<Claim> IdempotencyChecker::claim(const Envelope& envelope) const { return claim(envelope, options_.key); }

Result<Claim> IdempotencyChecker::claim(const Envelope& envelope, const KeyOptions& key_options) const {
  auto key = build_key(envelope, key_options);
  if (!key) return std::move(key).error();
  const std::string fingerprint = options_.validate_payload ? envelope.payload_fingerprint() : std::string();
  ClaimRequest request = make_request(envelope, *key);
  request.fingerprint = fingerprint;

  std::unique_ptr<SpanScope> span = options_.observer ? options_.observer->start_span(trace::kSpanClaim) : nullptr;
  const auto start = SteadyClock::now();
  auto outcome = store_->claim(request);
  observe_call(StoreOp::kClaim, start, outcome ? nullptr : &outcome.error());
  if (options_.observer) {
    const ClaimObservation observation{key_options.scope, *key, envelope.event_id, envelope.event_type,
                                       outcome ? &*outcome : nullptr};
    options_.observer->on_claim(observation);
    if (span) {
      trace::annotate_claim(*span, observation);
      if (!outcome) span->set_error(outcome.error().to_string());
    }
  }
  if (!outcome) return std::move(outcome).error();
  return Claim{std::move(*key), std::move(*outcome)};
}

Result<std::vector<Claim>> IdempotencyChecker::claim_many(std::span<const Envelope> envelopes) const {
  std::vector<std::string> keys;
  std::vector<std::string> fingerprints;
  keys.reserve(envelopes.size());
  fingerprints.reserve(envelopes.size());
  for (const Envelope& envelope : envelopes) {
    auto key = build_key(envelope, options_.key);
    if (!key) return std::move(key).error();
    keys.push_back(std::move(*key));
    fingerprints.push_back(options_.validate_payload ? envelope.payload_fingerprint() : std::string());
  }
  // Requests hold views into keys/fingerprints, so those must not move now.
  std::vector<ClaimRequest> requests;
  requests.reserve(envelopes.size());
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    ClaimRequest request = make_request(envelopes[i], keys[i]);
    request.fingerprint = fingerprints[i];
    requests.push_back(request);
  }
  const auto start = SteadyClock::now();
  auto outcomes = store_->claim_many(requests);
  observe_call(StoreOp::kClaimMany, start, outcomes ? nullptr : &outcomes.error());
  if (!outcomes) return std::move(outcomes).error();
  if (outcomes->size() != envelopes.size()) {
    return Error(ErrorCode::kInternal, "store returned " + std::to_string(outcomes->size()) + " outcomes for " +
                                           std::to_string(envelopes.size()) + " claims");
  }
  std::vector<Claim> claims;
  claims.reserve(envelopes.size());
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    if (options_.observer) {
      options_.observer->on_claim(
          {options_.key.scope, keys[i], envelopes[i].event_id, envelopes[i].event_type, &(*outcomes)[i]});
    }
    claims.push_back(Claim{std::move(keys[i]), std::move((*outcomes)[i])});
  }
  return claims;
}

Status IdempotencyChecker::complete(std::string_view key, Token token, std::string_view result) const {
  if (result.size() > options_.max_result_bytes) {
    return Error(ErrorCode::kResultTooLarge, "result is " + std::to_string(result.size()) +
                                                 " bytes, above max_result_bytes=" +
                                                 std::to_string(options_.max_result_bytes) + "; it was not stored");
  }
  const auto start = SteadyClock::now();
  Status status = store_->complete({.key = key, .token = token, .result = result, .ttl = options_.ttl});
  observe_call(StoreOp::kComplete, start, status ? nullptr : &status.error());
  return status;
}

Status IdempotencyChecker::fail(std::string_view key, Token token, std::string_view error, bool retryable) const {
  // An error message is for people; cap it so a huge exception text cannot
  // push the record over a store's value limit.
  constexpr std::size_t kMaxErrorBytes = 4096;
  const std::string_view stored = error.substr(0, std::min(error.size(), kMaxErrorBytes));
  const auto start = SteadyClock::now();
  Status status =
      store_->fail({.key = key, .token = token, .error = stored, .retryable = retryable, .ttl = options_.ttl});
  observe_call(StoreOp::kFail, start, status ? nullptr : &status.error());
  return status;
}

Status IdempotencyChecker::extend(std::string_view key, Token token) const {
  const auto start = SteadyClock::now();
  Status status = store_->extend(key, token, options_.lease);
  observe_call(StoreOp::kExtend, start, status ? nullptr : &status.error());
  return status;
}

Status IdempotencyChecker::checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) const {
  if (checkpoint.data.size() > options_.max_result_bytes) {
    return Error(ErrorCode::kResultTooLarge, "checkpoint data is above max_result_bytes; it was not stored");
  }
  const auto start = SteadyClock::now();
  Status status = store_->checkpoint(key, token, checkpoint);
  observe_call(StoreOp::kCheckpoint, start, status ? nullptr : &status.error());
  return status;
}

Result<std::optional<IdempotencyRecord>> IdempotencyChecker::get(std::string_view key) const {
  const auto start = SteadyClock::now();
  auto record = store_->get(key);
  observe_call(StoreOp::kGet, start, record ? nullptr : &record.error());
  return record;
}

Result<std::optional<IdempotencyRecord>> IdempotencyChecker::wait_for_completion(
    std::string_view key, std::chrono::milliseconds timeout) const {
  const auto deadline = SteadyClock::now() + timeout;
  // Start fast (most handlers are short), back off to bound the polling load
  // that many waiting duplicates put on the store.
  std::chrono::milliseconds delay(5);
  constexpr std::chrono::milliseconds kMaxDelay(200);
  while (true) {
    auto record = get(key);
    if (!record) return record;
    if (!*record || (*record)->status != ProcessingStatus::kProcessing) return record;
    const auto now = SteadyClock::now();
    if (now >= deadline) return record;
    std::this_thread::sleep_for(std::min<SteadyClock::duration>(delay, deadline - now));
    delay = std::min(delay * 2, kMaxDelay);
  }
}

Result<std::optional<IdempotencyRecord>> IdempotencyChecker::get_processing_record(
    std::string_view idempotency_key) const {
  auto key = key_for(idempotency_key);
  if (!key) return std::move(key).error();
  return get(*key);
}

Result<bool> IdempotencyChecker::is_duplicate(std::string_view idempotency_key) const {
  auto record = get_processing_record(idempotency_key);
  if (!record) return std::move(record).error();
  if (!*record) return false;
  const IdempotencyRecord& r = **record;
  switch (r.status) {
    case ProcessingStatus::kCompleted: return true;
    case ProcessingStatus::kFailed: return !r.retryable;
    case ProcessingStatus::kProcessing:
      return r.lease_valid(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
  }
  return false;
}

Result<bool> IdempotencyChecker::delete_record(std::string_view idempotency_key) const {
  auto key = key_for(idempotency_key);
  if (!key) return std::move(key).error();
  const auto start = SteadyClock::now();
  auto removed = store_->remove(*key);
  observe_call(StoreOp::kRemove, start, removed ? nullptr : &removed.error());
  return removed;
}

IdempotencyChecker::Health IdempotencyChecker::health() const {
  Health health;
  health.store_kind = std::string(store_->kind());
  const auto start = SteadyClock::now();
  Status status = store_->ping();
  health.round_trip = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start);
  health.reachable = status.ok();
  health.circuit = store_->circuit_state();
  if (!status) health.detail = status.error().to_string();
  return health;
}

}  // namespace idem
