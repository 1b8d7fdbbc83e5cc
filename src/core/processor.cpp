#include "idem/core/processor.h"

#include <thread>

#include "core/duration_check.h"
#include "core/lease_keeper.h"
#include "idem/core/tracing.h"

namespace idem {
namespace detail {

struct ContextState {
  std::shared_ptr<IdempotencyChecker> checker;
  std::shared_ptr<LeaseKeeper> keeper;
  std::string scope;
  std::string key;
  ClaimOutcome outcome;
  bool unprotected = false;
  bool finished = false;
  std::optional<std::string> cached_result;
  std::optional<std::string> cached_error;
  std::uint64_t heartbeat_id = 0;
  std::shared_ptr<std::atomic<bool>> lease_lost = std::make_shared<std::atomic<bool>>(false);
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Open from acquisition to verdict; null when not traced.
  std::unique_ptr<SpanScope> handler_span;

  bool owns() const noexcept { return outcome.acquired() && !unprotected; }

  void stop_heartbeat() noexcept {
    if (heartbeat_id != 0) {
      keeper->remove(heartbeat_id);
      heartbeat_id = 0;
    }
  }

  void report(HandlerOutcome handler_outcome) {
    if (const auto& observer = checker->options().observer) {
      observer->on_handler(scope, handler_outcome, std::chrono::steady_clock::now() - started);
    }
    if (handler_span) {
      trace::annotate_handler(*handler_span, handler_outcome);
      handler_span.reset();  // ends the span
    }
  }

  std::unique_ptr<SpanScope> start_span(std::string_view name) const {
    const auto& observer = checker->options().observer;
    if (!observer) return nullptr;
    auto span = observer->start_span(name);
    if (span) {
      span->set_attribute(trace::kKey, key);
      span->set_attribute(trace::kToken, static_cast<std::int64_t>(outcome.token));
    }
    return span;
  }
};

}  // namespace detail

namespace {

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Store writes after the handler ran are retried briefly: giving up turns a
// blip into a re-execution once the lease expires.
template <typename Write>
Status write_with_retry(Write&& write) {
  std::chrono::milliseconds delay(50);
  Status status = write();
  for (int attempt = 1; attempt < 4 && !status && status.error().retryable(); ++attempt) {
    std::this_thread::sleep_for(delay);
    delay *= 2;
    status = write();
  }
  return status;
}

}  // namespace

FailureKind default_failure_classifier(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const TerminalError&) {
    return FailureKind::kTerminal;
  } catch (...) {
    return FailureKind::kRetryable;
  }
}

DuplicateEventError::DuplicateEventError(std::string key, ClaimStatus status, std::optional<std::string> cached_result)
    : IdemError(Error(ErrorCode::kDuplicate,
                      "duplicate event for key '" + key + "' (" + std::string(to_string(status)) + ")")),
      key_(std::move(key)),
      status_(status),
      cached_result_(std::move(cached_result)) {}

EventInProgressError::EventInProgressError(std::string key, std::optional<IdempotencyRecord> record,
                                           std::chrono::milliseconds waited)
    : IdemError(Error(ErrorCode::kInProgress, "event for key '" + key + "' is still being processed by another worker" +
                                                  " (waited " + std::to_string(waited.count()) +
                                                  " ms); do not ack it, redeliver it later")),
      key_(std::move(key)),
      record_(std::move(record)),
      waited_(waited) {}

Status ProcessorOptions::validate() const {
  constexpr ErrorCode kCode = ErrorCode::kInvalidConfiguration;
  constexpr std::chrono::milliseconds kZero(0);
  if (wait_for_in_progress) {
    if (Status s = detail::check_duration("ProcessorOptions::wait_for_in_progress", *wait_for_in_progress, kZero,
                                          kMaxInProgressWait, kCode);
        !s) {
      return s;
    }
  }
  return detail::check_duration("ProcessorOptions::heartbeat_interval", heartbeat_interval, kZero, kMaxLease, kCode);
}

// --- ProcessingContext --------------------------------------------------------

ProcessingContext::ProcessingContext(std::unique_ptr<detail::ContextState> state) : state_(std::move(state)) {}
ProcessingContext::ProcessingContext(ProcessingContext&&) noexcept = default;
ProcessingContext& ProcessingContext::operator=(ProcessingContext&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}
ProcessingContext::~ProcessingContext() { release(); }

void ProcessingContext::release() noexcept {
  if (!state_) return;
  detail::ContextState& s = *state_;
  s.stop_heartbeat();
  if (s.owns() && !s.finished && !s.lease_lost->load(std::memory_order_acquire)) {
    // Leaving without a verdict means the work may be half done: FAILED
    // (retryable) lets the next delivery run it again at once instead of
    // waiting for the lease to run out.
    try {
      (void)s.checker->fail(s.key, s.outcome.token,
                            "abandoned: the guard was left without mark_completed (early return or exception)", true);
      s.report(HandlerOutcome::kAbandoned);
    } catch (...) {
      // A destructor must not throw; the lease expiry recovers the key.
    }
  }
  state_.reset();
}

bool ProcessingContext::should_process() const noexcept { return state_->outcome.acquired(); }
ClaimStatus ProcessingContext::status() const noexcept { return state_->outcome.status; }
AcquireKind ProcessingContext::acquire_kind() const noexcept { return state_->outcome.acquire_kind; }
bool ProcessingContext::is_takeover() const noexcept {
  return state_->outcome.acquired() && state_->outcome.acquire_kind == AcquireKind::kTakeover;
}
bool ProcessingContext::is_unprotected() const noexcept { return state_->unprotected; }
const std::optional<std::string>& ProcessingContext::cached_result() const noexcept { return state_->cached_result; }
const std::optional<std::string>& ProcessingContext::cached_error() const noexcept { return state_->cached_error; }
const std::optional<IdempotencyRecord>& ProcessingContext::record() const noexcept { return state_->outcome.record; }
const std::string& ProcessingContext::key() const noexcept { return state_->key; }
Token ProcessingContext::token() const noexcept { return state_->outcome.acquired() ? state_->outcome.token : 0; }
std::uint32_t ProcessingContext::attempt() const noexcept { return state_->outcome.attempt; }
const std::optional<Checkpoint>& ProcessingContext::last_checkpoint() const noexcept {
  return state_->outcome.checkpoint;
}
bool ProcessingContext::finished() const noexcept { return state_->finished; }

namespace {
// Calling these on a context that does not allow it is a bug in the
// calling code, not in the message: a ConfigurationError.
void require_owner(const detail::ContextState& s, const char* operation) {
  if (!s.outcome.acquired()) {
    throw ConfigurationError(
        Error(ErrorCode::kInvalidConfiguration,
              std::string(operation) + " on key '" + s.key + "', which this worker does not own (a duplicate)"));
  }
  if (s.finished) {
    throw ConfigurationError(Error(ErrorCode::kInvalidConfiguration,
                                   std::string(operation) + " on key '" + s.key + "', which is already finished"));
  }
}
}  // namespace

void ProcessingContext::mark_completed(std::string_view result) {
  detail::ContextState& s = *state_;
  require_owner(s, "mark_completed");
  if (s.unprotected) {
    s.finished = true;
    s.report(HandlerOutcome::kCompleted);
    return;
  }
  s.stop_heartbeat();
  auto span = s.start_span(trace::kSpanComplete);
  Status status = write_with_retry([&] { return s.checker->complete(s.key, s.outcome.token, result); });
  if (!status && status.error().code() == ErrorCode::kLeaseLost) {
    // A retried write may have landed before its reply was lost: that is
    // our own completion, not a takeover.
    auto record = s.checker->get(s.key);
    if (record && *record && (*record)->token == s.outcome.token && (*record)->status == ProcessingStatus::kCompleted) {
      status = {};
    }
  }
  if (span && !status) span->set_error(status.error().to_string());
  span.reset();
  if (status) {
    s.finished = true;
    s.report(HandlerOutcome::kCompleted);
    return;
  }
  switch (status.error().code()) {
    case ErrorCode::kLeaseLost:
      s.finished = true;
      s.report(HandlerOutcome::kLeaseLost);
      break;
    case ErrorCode::kResultTooLarge:
      // The checker has marked the record FAILED (retryable): a later
      // attempt (or a fixed handler) may produce something storable.
      s.finished = true;
      s.report(HandlerOutcome::kFailedRetryable);
      break;
    default: break;
  }
  throw_error(std::move(status).error());
}

void ProcessingContext::mark_failed(std::string_view error, FailureKind kind) {
  detail::ContextState& s = *state_;
  require_owner(s, "mark_failed");
  const bool retryable = kind == FailureKind::kRetryable;
  if (s.unprotected) {
    s.finished = true;
    s.report(retryable ? HandlerOutcome::kFailedRetryable : HandlerOutcome::kFailedTerminal);
    return;
  }
  s.stop_heartbeat();
  Status status = write_with_retry([&] { return s.checker->fail(s.key, s.outcome.token, error, retryable); });
  if (status) {
    s.finished = true;
    s.report(retryable ? HandlerOutcome::kFailedRetryable : HandlerOutcome::kFailedTerminal);
    return;
  }
  if (status.error().code() == ErrorCode::kLeaseLost) {
    s.finished = true;
    s.report(HandlerOutcome::kLeaseLost);
  }
  throw_error(std::move(status).error());
}

void ProcessingContext::checkpoint(std::string_view name, std::string_view data) {
  detail::ContextState& s = *state_;
  require_owner(s, "checkpoint");
  if (s.unprotected) return;
  s.checker->checkpoint(s.key, s.outcome.token, Checkpoint{std::string(name), std::string(data)}).value();
}

void ProcessingContext::extend() {
  detail::ContextState& s = *state_;
  require_owner(s, "extend");
  if (s.unprotected) return;
  s.checker->extend(s.key, s.outcome.token).value();
}

// --- IdempotentEventProcessor --------------------------------------------------

IdempotentEventProcessor::IdempotentEventProcessor(std::shared_ptr<IdempotencyChecker> checker,
                                                   ProcessorOptions options)
    : checker_(std::move(checker)), options_(std::move(options)) {
  if (!checker_) {
    throw ConfigurationError(
        Error(ErrorCode::kInvalidConfiguration, "IdempotentEventProcessor needs a checker (it was given null)"));
  }
  options_.validate().value();
  if (options_.heartbeat && options_.heartbeat_interval.count() > 0 &&
      options_.heartbeat_interval >= checker_->options().lease) {
    throw ConfigurationError(Error(
        ErrorCode::kInvalidConfiguration,
        "ProcessorOptions::heartbeat_interval (" + std::to_string(options_.heartbeat_interval.count()) +
            " ms) must be shorter than CheckerOptions::lease (" + std::to_string(checker_->options().lease.count()) +
            " ms), or the lease runs out between two heartbeats"));
  }
  key_options_ = checker_->options().key;
  if (options_.scope) key_options_.scope = *options_.scope;
  if (options_.key_extractor) key_options_.extractor = options_.key_extractor;
  if (options_.heartbeat) lease_keeper_ = std::make_shared<detail::LeaseKeeper>();
}

IdempotentEventProcessor::~IdempotentEventProcessor() = default;

FailureKind IdempotentEventProcessor::classify(const std::exception_ptr& error) const {
  return options_.classify_failure ? options_.classify_failure(error) : default_failure_classifier(error);
}

ProcessingContext IdempotentEventProcessor::process(const Envelope& envelope) {
  return process(envelope, options_.wait_for_in_progress.value_or(std::chrono::milliseconds(0)));
}

ProcessingContext IdempotentEventProcessor::process(const Envelope& envelope,
                                                    std::chrono::milliseconds wait_for_in_progress) {
  auto state = std::make_unique<detail::ContextState>();
  state->checker = checker_;
  state->keeper = lease_keeper_;
  state->scope = key_options_.scope;

  auto claim = checker_->claim(envelope, key_options_);
  if (!claim) {
    const Error& error = claim.error();
    if (error.retryable() && checker_->options().outage_policy == OutagePolicy::kFailOpen) {
      if (const auto& observer = checker_->options().observer) observer->on_fail_open(state->scope, error);
      state->unprotected = true;
      state->outcome.status = ClaimStatus::kAcquired;
      auto key = checker_->key_for(envelope, key_options_);
      state->key = key ? std::move(*key) : envelope.effective_key();
      return ProcessingContext(std::move(state));
    }
    throw_error(std::move(claim).error());
  }
  state->key = std::move(claim->key);
  state->outcome = std::move(claim->outcome);

  if (state->outcome.status == ClaimStatus::kInProgress && wait_for_in_progress.count() > 0) {
    auto waited = checker_->wait_for_completion(state->key, std::min(wait_for_in_progress, kMaxInProgressWait));
    if (!waited) throw_error(std::move(waited).error());
    const bool settled = !*waited || (*waited)->status != ProcessingStatus::kProcessing ||
                         !(*waited)->lease_valid(
                             std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
    if (settled) {
      // Claim again rather than interpret the record: the original may have
      // failed (retryable) or died, and then this delivery must run.
      auto again = checker_->claim(envelope, key_options_);
      if (!again) throw_error(std::move(again).error());
      state->outcome = std::move(again->outcome);
    } else {
      state->outcome.record = std::move(*waited);  // the owner's latest lease
    }
  }

  switch (state->outcome.status) {
    case ClaimStatus::kMismatch:
      throw KeyMismatchError(Error(ErrorCode::kMismatch,
                                   "idempotency key '" + state->key + "' was already used with a different payload"));
    case ClaimStatus::kCompleted:
      if (state->outcome.record) state->cached_result = state->outcome.record->result;
      break;
    case ClaimStatus::kFailed:
      if (state->outcome.record) state->cached_error = state->outcome.record->error;
      break;
    case ClaimStatus::kAcquired:
      state->handler_span = state->start_span(trace::kSpanHandler);
      if (state->handler_span) {
        state->handler_span->set_attribute(trace::kMessagingMessageId, envelope.event_id);
        state->handler_span->set_attribute(trace::kAttempt, static_cast<std::int64_t>(state->outcome.attempt));
      }
      if (lease_keeper_) {
        auto interval =
            options_.heartbeat_interval.count() > 0 ? options_.heartbeat_interval : checker_->options().lease / 3;
        interval = std::max(interval, std::chrono::milliseconds(1));
        state->heartbeat_id =
            lease_keeper_->add(checker_, state->key, state->outcome.token, interval, state->lease_lost);
      }
      break;
    case ClaimStatus::kInProgress: break;
  }
  return ProcessingContext(std::move(state));
}

// --- Asynchronous handlers ---------------------------------------------------

namespace detail {
struct AsyncState {
  AsyncState(ProcessingContext context, IdempotentEventProcessor::AsyncCallback callback, FailureClassifier classify)
      : ctx(std::move(context)), on_done(std::move(callback)), classify_failure(std::move(classify)) {}
  ~AsyncState() {
    if (!done.exchange(true)) {
      IdempotentEventProcessor::AsyncOutcome outcome;
      outcome.error = "the asynchronous handler dropped its completion without calling it";
      // ctx's destructor (after this body) marks the record FAILED, retryable.
      try {
        on_done(std::move(outcome));
      } catch (...) {
      }
    }
  }
  AsyncState(const AsyncState&) = delete;
  AsyncState& operator=(const AsyncState&) = delete;

  ProcessingContext ctx;
  IdempotentEventProcessor::AsyncCallback on_done;
  FailureClassifier classify_failure;
  std::atomic<bool> done{false};
  std::mutex mutex;  // serializes succeed/fail against each other
};
}  // namespace detail

void IdempotentEventProcessor::Completion::succeed(std::string_view result) const {
  detail::AsyncState& s = *state_;
  std::lock_guard lock(s.mutex);
  if (s.done.exchange(true)) return;
  AsyncOutcome outcome;
  try {
    s.ctx.mark_completed(result);
    outcome.result = std::string(result);
  } catch (const std::exception& e) {
    outcome.error = e.what();
    outcome.exception = std::current_exception();
  }
  s.on_done(std::move(outcome));
}

void IdempotentEventProcessor::Completion::fail(const std::exception_ptr& error) const {
  detail::AsyncState& s = *state_;
  std::lock_guard lock(s.mutex);
  if (s.done.exchange(true)) return;
  AsyncOutcome outcome;
  outcome.error = describe(error);
  outcome.exception = error;
  try {
    s.ctx.mark_failed(*outcome.error, s.classify_failure(error));
  } catch (...) {
    // The handler's own error is what the caller needs to see.
  }
  s.on_done(std::move(outcome));
}

void IdempotentEventProcessor::process_async(const Envelope& envelope, AsyncHandler handler, AsyncCallback on_done) {
  std::optional<ProcessingContext> ctx;
  try {
    ctx.emplace(process(envelope));
  } catch (const std::exception& e) {
    AsyncOutcome outcome;
    outcome.error = e.what();
    outcome.exception = std::current_exception();
    on_done(std::move(outcome));
    return;
  }
  if (!ctx->should_process()) {
    AsyncOutcome outcome;
    outcome.status = ctx->status();
    outcome.result = ctx->cached_result();
    outcome.error = ctx->cached_error();
    on_done(std::move(outcome));
    return;
  }
  FailureClassifier classify_failure =
      options_.classify_failure ? options_.classify_failure : FailureClassifier(default_failure_classifier);
  Completion completion;
  completion.state_ =
      std::make_shared<detail::AsyncState>(std::move(*ctx), std::move(on_done), std::move(classify_failure));
  try {
    handler(envelope, completion.state_->ctx, completion);
  } catch (...) {
    completion.fail(std::current_exception());
  }
}

}  // namespace idem
