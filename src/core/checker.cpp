#include "idem/core/checker.h"

#include <algorithm>

#include "core/duration_check.h"
#include "core/fingerprint.h"
#include "idem/core/tracing.h"

namespace idem {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kOneMs(1);

Error invalid_option(std::string message) { return {ErrorCode::kInvalidConfiguration, std::move(message)}; }

}  // namespace

Status CheckerOptions::validate() const {
  constexpr ErrorCode kCode = ErrorCode::kInvalidConfiguration;
  if (Status s = detail::check_duration("CheckerOptions::ttl", ttl, kOneMs, kMaxTtl, kCode); !s) return s;
  if (Status s = detail::check_duration("CheckerOptions::lease", lease, kOneMs, kMaxLease, kCode); !s) return s;
  if (max_result_bytes == 0) return invalid_option("CheckerOptions::max_result_bytes must be positive");
  if (key.prefix.find('\0') != std::string::npos || key.scope.find('\0') != std::string::npos) {
    return invalid_option("CheckerOptions::key prefix and scope must not contain NUL bytes");
  }
  return {};
}

IdempotencyChecker::IdempotencyChecker(std::shared_ptr<Store> store, CheckerOptions options)
    : store_(std::move(store)), options_(std::move(options)) {
  if (!store_) throw ConfigurationError(invalid_option("IdempotencyChecker needs a store (it was given null)"));
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

SteadyClock::time_point IdempotencyChecker::observe_call(StoreOp op, SteadyClock::time_point start,
                                                         const Error* error) const {
  if (!options_.observer) return start;
  const auto end = SteadyClock::now();
  options_.observer->on_store_call(store_->kind(), op, end - start, error);
  // Read before writing: an exchange on every call would bounce the cache
  // line between all the threads sharing this checker.
  const CircuitState circuit = store_->circuit_state();
  if (reported_circuit_.load(std::memory_order_relaxed) != circuit &&
      reported_circuit_.exchange(circuit, std::memory_order_relaxed) != circuit) {
    options_.observer->on_circuit_state(store_->kind(), circuit);
  }
  return end;
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

void IdempotencyChecker::observe_claim(std::string_view scope, std::string_view key, std::string_view event_id,
                                       std::string_view event_type, const Result<ClaimOutcome>& outcome,
                                       SpanScope* span) const {
  if (!options_.observer) return;
  const ClaimObservation observation{scope, key, event_id, event_type, outcome ? &*outcome : nullptr};
  options_.observer->on_claim(observation);
  if (span) {
    trace::annotate_claim(*span, observation);
    if (!outcome) span->set_error(outcome.error().to_string());
  }
}

Result<Claim> IdempotencyChecker::claim(const Envelope& envelope, const KeyOptions& key_options) const {
  return claim_impl(envelope, key_options, nullptr);
}

Result<Claim> IdempotencyChecker::claim_impl(const Envelope& envelope, const KeyOptions& key_options,
                                             SteadyClock::time_point* answered) const {
  auto key = build_key(envelope, key_options);
  if (!key) return std::move(key).error();
  detail::FingerprintHex fingerprint{};
  ClaimRequest request = make_request(envelope, *key);
  if (options_.validate_payload) {
    detail::payload_fingerprint(envelope.payload, fingerprint);
    request.fingerprint = std::string_view(fingerprint.data(), fingerprint.size());
  }

  if (!options_.observer) {
    auto outcome = store_->claim(request);
    if (!outcome) return std::move(outcome).error();
    return Claim{std::move(*key), std::move(*outcome)};
  }
  std::unique_ptr<SpanScope> span = options_.observer->start_span(trace::kSpanClaim);
  const auto start = call_start();
  auto outcome = store_->claim(request);
  const auto end = observe_call(StoreOp::kClaim, start, outcome ? nullptr : &outcome.error());
  if (answered != nullptr) *answered = end;
  observe_claim(key_options.scope, *key, envelope.event_id, envelope.event_type, outcome, span.get());
  if (!outcome) return std::move(outcome).error();
  return Claim{std::move(*key), std::move(*outcome)};
}

void IdempotencyChecker::claim_async(const Envelope& envelope, ResultCallback<Claim> done) const {
  claim_async(envelope, options_.key, std::move(done));
}

void IdempotencyChecker::claim_async(const Envelope& envelope, const KeyOptions& key_options,
                                     ResultCallback<Claim> done) const {
  auto key = build_key(envelope, key_options);
  if (!key) {
    done(std::move(key).error());
    return;
  }
  detail::FingerprintHex fingerprint{};
  ClaimRequest request = make_request(envelope, *key);
  if (options_.validate_payload) {
    detail::payload_fingerprint(envelope.payload, fingerprint);
    request.fingerprint = std::string_view(fingerprint.data(), fingerprint.size());
  }

  // What the completion needs outlives this call; the identity strings are
  // copied only when someone observes them. The callback captures this one
  // pointer, which std::function keeps without allocating.
  struct Pending {
    const IdempotencyChecker* checker;
    ResultCallback<Claim> done;
    std::string key;
    std::string scope;
    EventIdentity event;
    std::shared_ptr<SpanScope> span;
    SteadyClock::time_point start;
  };
  auto pending = std::make_shared<Pending>();
  pending->checker = this;
  pending->done = std::move(done);
  pending->key = std::move(*key);
  request.key = pending->key;
  if (options_.observer) {
    pending->scope = key_options.scope;
    pending->event = {envelope.event_id, envelope.event_type};
    pending->span = options_.observer->start_span(trace::kSpanClaim);
  }
  pending->start = call_start();
  store_->claim_async(request, [pending](Result<ClaimOutcome> outcome) {
    const IdempotencyChecker& checker = *pending->checker;
    if (checker.options_.observer) {
      checker.observe_call(StoreOp::kClaim, pending->start, outcome ? nullptr : &outcome.error());
      checker.observe_claim(pending->scope, pending->key, pending->event.event_id, pending->event.event_type, outcome,
                            pending->span.get());
      pending->span.reset();
    }
    if (!outcome) {
      pending->done(std::move(outcome).error());
      return;
    }
    pending->done(Claim{std::move(pending->key), std::move(*outcome)});
  });
}

Result<std::vector<Claim>> IdempotencyChecker::finish_claim_many(std::vector<std::string> keys,
                                                                 const std::vector<EventIdentity>& events,
                                                                 Result<std::vector<ClaimOutcome>> outcomes) const {
  if (!outcomes) return std::move(outcomes).error();
  if (outcomes->size() != keys.size()) {
    return Error(ErrorCode::kInternal, "store returned " + std::to_string(outcomes->size()) + " outcomes for " +
                                           std::to_string(keys.size()) + " claims");
  }
  std::vector<Claim> claims;
  claims.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (options_.observer && i < events.size()) {
      options_.observer->on_claim(
          {options_.key.scope, keys[i], events[i].event_id, events[i].event_type, &(*outcomes)[i]});
    }
    claims.push_back(Claim{std::move(keys[i]), std::move((*outcomes)[i])});
  }
  return claims;
}

namespace {
// The keys, fingerprints and requests of a batch. Requests view into the
// strings, so the vectors are filled completely before any view is taken.
struct BatchRequests {
  std::vector<std::string> keys;
  std::vector<detail::FingerprintHex> fingerprints;
  std::vector<ClaimRequest> requests;
};
}  // namespace

Result<std::vector<Claim>> IdempotencyChecker::claim_many(std::span<const Envelope> envelopes) const {
  std::vector<std::string> keys;
  std::vector<detail::FingerprintHex> fingerprints;
  keys.reserve(envelopes.size());
  fingerprints.reserve(envelopes.size());
  for (const Envelope& envelope : envelopes) {
    auto key = build_key(envelope, options_.key);
    if (!key) return std::move(key).error();
    keys.push_back(std::move(*key));
    fingerprints.emplace_back();
    if (options_.validate_payload) detail::payload_fingerprint(envelope.payload, fingerprints.back());
  }
  // Requests hold views into keys/fingerprints, so those must not move now.
  std::vector<ClaimRequest> requests;
  requests.reserve(envelopes.size());
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    ClaimRequest request = make_request(envelopes[i], keys[i]);
    if (options_.validate_payload)
      request.fingerprint = std::string_view(fingerprints[i].data(), fingerprints[i].size());
    requests.push_back(request);
  }
  std::vector<EventIdentity> events;
  if (options_.observer) {
    events.reserve(envelopes.size());
    for (const Envelope& envelope : envelopes) events.push_back({envelope.event_id, envelope.event_type});
  }
  const auto start = call_start();
  auto outcomes = store_->claim_many(requests);
  observe_call(StoreOp::kClaimMany, start, outcomes ? nullptr : &outcomes.error());
  return finish_claim_many(std::move(keys), events, std::move(outcomes));
}

void IdempotencyChecker::claim_many_async(std::span<const Envelope> envelopes,
                                          ResultCallback<std::vector<Claim>> done) const {
  auto batch = std::make_shared<BatchRequests>();
  batch->keys.reserve(envelopes.size());
  batch->fingerprints.reserve(envelopes.size());
  for (const Envelope& envelope : envelopes) {
    auto key = build_key(envelope, options_.key);
    if (!key) {
      done(std::move(key).error());
      return;
    }
    batch->keys.push_back(std::move(*key));
    batch->fingerprints.emplace_back();
    if (options_.validate_payload) detail::payload_fingerprint(envelope.payload, batch->fingerprints.back());
  }
  batch->requests.reserve(envelopes.size());
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    ClaimRequest request = make_request(envelopes[i], batch->keys[i]);
    if (options_.validate_payload) {
      request.fingerprint = std::string_view(batch->fingerprints[i].data(), batch->fingerprints[i].size());
    }
    batch->requests.push_back(request);
  }
  auto events = std::make_shared<std::vector<EventIdentity>>();
  if (options_.observer) {
    events->reserve(envelopes.size());
    for (const Envelope& envelope : envelopes) events->push_back({envelope.event_id, envelope.event_type});
  }
  const auto start = call_start();
  store_->claim_many_async(batch->requests, [this, batch, events, start,
                                             done = std::move(done)](Result<std::vector<ClaimOutcome>> outcomes) {
    observe_call(StoreOp::kClaimMany, start, outcomes ? nullptr : &outcomes.error());
    done(finish_claim_many(std::move(batch->keys), *events, std::move(outcomes)));
  });
}

Status IdempotencyChecker::check_result_size(std::string_view result) const {
  if (result.size() <= options_.max_result_bytes) return {};
  return Error(ErrorCode::kResultTooLarge, "result is " + std::to_string(result.size()) +
                                               " bytes, above max_result_bytes=" +
                                               std::to_string(options_.max_result_bytes) + "; it was not stored");
}

std::string_view IdempotencyChecker::capped_error(std::string_view error) const noexcept {
  // An error message is for people; cap it so a huge exception text cannot
  // push the record over a store's value limit.
  constexpr std::size_t kMaxErrorBytes = 4096;
  return error.substr(0, std::min(error.size(), kMaxErrorBytes));
}

Status IdempotencyChecker::complete(std::string_view key, Token token, std::string_view result) const {
  return complete_impl(key, token, result, nullptr);
}

Status IdempotencyChecker::complete_impl(std::string_view key, Token token, std::string_view result,
                                         SteadyClock::time_point* answered) const {
  if (Status too_large = check_result_size(result); !too_large) {
    // Keep the promise of max_result_bytes: FAILED (retryable), not a record
    // left PROCESSING that answers "in progress" until its lease runs out.
    // The size error is what the caller must see, whatever fail() answers.
    (void)fail(key, token, too_large.error().message(), true);
    return too_large;
  }
  const auto start = call_start();
  Status status = store_->complete({.key = key, .token = token, .result = result, .ttl = options_.ttl});
  const auto end = observe_call(StoreOp::kComplete, start, status ? nullptr : &status.error());
  if (answered != nullptr) *answered = end;
  return status;
}

Status IdempotencyChecker::fail(std::string_view key, Token token, std::string_view error, bool retryable) const {
  const auto start = call_start();
  Status status = store_->fail(
      {.key = key, .token = token, .error = capped_error(error), .retryable = retryable, .ttl = options_.ttl});
  observe_call(StoreOp::kFail, start, status ? nullptr : &status.error());
  return status;
}

Status IdempotencyChecker::extend(std::string_view key, Token token) const {
  const auto start = call_start();
  Status status = store_->extend(key, token, options_.lease);
  observe_call(StoreOp::kExtend, start, status ? nullptr : &status.error());
  return status;
}

Status IdempotencyChecker::checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) const {
  if (checkpoint.data.size() > options_.max_result_bytes) {
    return Error(ErrorCode::kResultTooLarge, "checkpoint data is above max_result_bytes; it was not stored");
  }
  const auto start = call_start();
  Status status = store_->checkpoint(key, token, checkpoint);
  observe_call(StoreOp::kCheckpoint, start, status ? nullptr : &status.error());
  return status;
}

Result<std::optional<IdempotencyRecord>> IdempotencyChecker::get(std::string_view key) const {
  const auto start = call_start();
  auto record = store_->get(key);
  observe_call(StoreOp::kGet, start, record ? nullptr : &record.error());
  return record;
}

namespace {
// Wraps a completion so that the store call is observed before `done` runs
// (and leaves it as it is when nobody observes).
template <typename Value, typename Observe>
std::function<void(Value)> observed(bool observing, Observe observe, std::function<void(Value)> done) {
  if (!observing) return done;
  return [observe = std::move(observe), done = std::move(done)](Value value) {
    observe(value);
    done(std::move(value));
  };
}
template <typename Value>
const Error* error_of(const Value& value) {
  return value ? nullptr : &value.error();
}
}  // namespace

void IdempotencyChecker::complete_async(std::string_view key, Token token, std::string_view result,
                                        StatusCallback done) const {
  if (Status too_large = check_result_size(result); !too_large) {
    // As complete(): mark FAILED (retryable), then report the size error.
    const std::string message = too_large.error().message();
    fail_async(key, token, message, true,
               [too_large = std::move(too_large), done = std::move(done)](const Status& /*failed*/) mutable {
                 done(std::move(too_large));
               });
    return;
  }
  const auto start = call_start();
  store_->complete_async(
      {.key = key, .token = token, .result = result, .ttl = options_.ttl},
      observed<Status>(
          options_.observer != nullptr,
          [this, start](const Status& s) { observe_call(StoreOp::kComplete, start, error_of(s)); }, std::move(done)));
}

void IdempotencyChecker::fail_async(std::string_view key, Token token, std::string_view error, bool retryable,
                                    StatusCallback done) const {
  const auto start = call_start();
  store_->fail_async(
      {.key = key, .token = token, .error = capped_error(error), .retryable = retryable, .ttl = options_.ttl},
      observed<Status>(
          options_.observer != nullptr,
          [this, start](const Status& s) { observe_call(StoreOp::kFail, start, error_of(s)); }, std::move(done)));
}

void IdempotencyChecker::extend_async(std::string_view key, Token token, StatusCallback done) const {
  const auto start = call_start();
  store_->extend_async(
      key, token, options_.lease,
      observed<Status>(
          options_.observer != nullptr,
          [this, start](const Status& s) { observe_call(StoreOp::kExtend, start, error_of(s)); }, std::move(done)));
}

void IdempotencyChecker::checkpoint_async(std::string_view key, Token token, const Checkpoint& checkpoint,
                                          StatusCallback done) const {
  if (checkpoint.data.size() > options_.max_result_bytes) {
    done(Error(ErrorCode::kResultTooLarge, "checkpoint data is above max_result_bytes; it was not stored"));
    return;
  }
  const auto start = call_start();
  store_->checkpoint_async(
      key, token, checkpoint,
      observed<Status>(
          options_.observer != nullptr,
          [this, start](const Status& s) { observe_call(StoreOp::kCheckpoint, start, error_of(s)); }, std::move(done)));
}

void IdempotencyChecker::get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) const {
  using Value = Result<std::optional<IdempotencyRecord>>;
  const auto start = call_start();
  store_->get_async(
      key, observed<Value>(
               options_.observer != nullptr,
               [this, start](const Value& v) { observe_call(StoreOp::kGet, start, error_of(v)); }, std::move(done)));
}

Result<std::optional<IdempotencyRecord>> IdempotencyChecker::wait_for_completion(
    std::string_view key, std::chrono::milliseconds timeout) const {
  const auto start = call_start();
  auto record = store_->wait_settled(key, timeout);
  observe_call(StoreOp::kGet, start, error_of(record));
  return record;
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
  const auto start = call_start();
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
