#include "idem/core/processor.h"

#include <time.h>

#include <atomic>
#include <thread>

#include "core/checker_access.h"
#include "core/duration_check.h"
#include "core/lease_keeper.h"
#include "idem/core/tracing.h"

namespace idem {
namespace detail {

using Clock = std::chrono::steady_clock;

// What every context of one processor shares.
struct ProcessorCore {
  std::shared_ptr<IdempotencyChecker> checker;
  // Always set: it renews leases (when heartbeat is on) and runs the
  // delayed retries of process_async(); its thread starts on first use.
  std::shared_ptr<LeaseKeeper> keeper;
  KeyOptions key_options;
  bool heartbeat = true;
  FailureClassifier classify;  // never empty
  HandlerExecutor executor;    // empty: inline

  Observer* observer() const noexcept { return checker->options().observer.get(); }
};

// A steady-clock reading for lease deadlines, where a few milliseconds of
// lag do not matter: CLOCK_MONOTONIC_COARSE is the clock steady_clock reads
// (CLOCK_MONOTONIC on Linux), kept at tick resolution and several times
// cheaper to read. A deadline from it is at most a tick early, which only
// renews a lease a little sooner.
Clock::time_point coarse_now() noexcept {
  timespec ts{};
  if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) return Clock::now();
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                       std::chrono::nanoseconds(ts.tv_nsec)));
}

struct ContextState {
  std::shared_ptr<const ProcessorCore> core;
  std::string key;
  ClaimOutcome outcome;
  bool unprotected = false;
  bool finished = false;
  bool async = false;       // run by process_async(): the Completion gives the verdict
  bool registered = false;  // `ticket` is with the keeper
  LeaseTicket ticket;
  Clock::time_point started{};  // set only when observed
  // Open from acquisition to verdict; null when not traced.
  std::unique_ptr<SpanScope> handler_span;

  const IdempotencyChecker& checker() const noexcept { return *core->checker; }
  bool owns() const noexcept { return outcome.acquired() && !unprotected; }
  bool lease_lost() const noexcept { return ticket.lost.load(std::memory_order_acquire); }

  void stop_heartbeat() {
    if (registered) {
      core->keeper->remove(ticket);
      registered = false;
    }
  }

  // `now` is a clock reading the caller already took when the verdict was
  // stored, or the epoch to read the clock here; only read when observed.
  void report(HandlerOutcome handler_outcome, Clock::time_point now = {}) {
    if (Observer* observer = core->observer()) {
      if (now == Clock::time_point{}) now = Clock::now();
      observer->on_handler(core->key_options.scope, handler_outcome, now - started);
    }
    if (handler_span) {
      trace::annotate_handler(*handler_span, handler_outcome);
      handler_span.reset();  // ends the span
    }
  }

  std::unique_ptr<SpanScope> start_span(std::string_view name) const {
    Observer* observer = core->observer();
    if (observer == nullptr) return nullptr;
    auto span = observer->start_span(name);
    if (span) {
      span->set_attribute(trace::kKey, key);
      span->set_attribute(trace::kToken, static_cast<std::int64_t>(outcome.token));
    }
    return span;
  }

  // The handler is about to run: time it, trace it, keep its lease alive.
  // `answered` is when the claim answered (the epoch when not observed).
  void begin_handler(const Envelope& envelope, Clock::time_point answered) {
    if (core->observer() != nullptr) {
      started = answered != Clock::time_point{} ? answered : Clock::now();
      handler_span = start_span(trace::kSpanHandler);
      if (handler_span) {
        handler_span->set_attribute(trace::kMessagingMessageId, envelope.event_id);
        handler_span->set_attribute(trace::kAttempt, static_cast<std::int64_t>(outcome.attempt));
      }
    }
    if (core->heartbeat) {
      ticket.checker = core->checker.get();
      ticket.key = key;  // `key` does not change from here on
      ticket.token = outcome.token;
      core->keeper->add(ticket, answered != Clock::time_point{} ? answered : coarse_now());
      registered = true;
    }
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

std::exception_ptr to_exception(Error error) {
  try {
    throw_error(std::move(error));
  } catch (...) {
    return std::current_exception();
  }
}

// Store writes after the handler ran are retried briefly: giving up turns a
// blip into a re-execution once the lease expires. process_async() waits
// the same delays on the heartbeat thread instead of sleeping.
constexpr int kWriteAttempts = 4;
constexpr std::chrono::milliseconds kFirstRetryDelay(50);

template <typename Write>
Status write_with_retry(Write&& write) {
  std::chrono::milliseconds delay = kFirstRetryDelay;
  Status status = write();
  for (int attempt = 1; attempt < kWriteAttempts && !status && status.error().retryable(); ++attempt) {
    std::this_thread::sleep_for(delay);
    delay *= 2;
    status = write();
  }
  return status;
}

const std::optional<std::string> kNoString;

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
  // process_async() settles its contexts itself, without blocking.
  if (!s.async) {
    try {
      s.stop_heartbeat();
      if (s.owns() && !s.finished && !s.lease_lost()) {
        // Leaving without a verdict means the work may be half done: FAILED
        // (retryable) lets the next delivery run it again at once instead of
        // waiting for the lease to run out.
        (void)s.checker().fail(s.key, s.outcome.token,
                               "abandoned: the guard was left without mark_completed (early return or exception)",
                               true);
        s.report(HandlerOutcome::kAbandoned);
      }
    } catch (...) {  // NOLINT(bugprone-empty-catch)
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
// Straight from the record the claim returned: no copy per duplicate.
const std::optional<std::string>& ProcessingContext::cached_result() const noexcept {
  const ClaimOutcome& o = state_->outcome;
  return o.status == ClaimStatus::kCompleted && o.record ? o.record->result : kNoString;
}
const std::optional<std::string>& ProcessingContext::cached_error() const noexcept {
  const ClaimOutcome& o = state_->outcome;
  return o.status == ClaimStatus::kFailed && o.record ? o.record->error : kNoString;
}
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

void require_sync(const detail::ContextState& s, const char* operation) {
  if (s.async) {
    throw ConfigurationError(Error(ErrorCode::kInvalidConfiguration,
                                   std::string(operation) + " on key '" + s.key +
                                       "' inside process_async(): give the verdict through the Completion"));
  }
}
}  // namespace

void ProcessingContext::mark_completed(std::string_view result) {
  detail::ContextState& s = *state_;
  require_owner(s, "mark_completed");
  require_sync(s, "mark_completed");
  if (s.unprotected) {
    s.finished = true;
    s.report(HandlerOutcome::kCompleted);
    return;
  }
  s.stop_heartbeat();
  auto span = s.start_span(trace::kSpanComplete);
  detail::Clock::time_point answered{};
  detail::Clock::time_point* when = s.core->observer() != nullptr ? &answered : nullptr;
  Status status = write_with_retry(
      [&] { return detail::CheckerAccess::complete(s.checker(), s.key, s.outcome.token, result, when); });
  if (!status && status.error().code() == ErrorCode::kLeaseLost) {
    // A retried write may have landed before its reply was lost: that is
    // our own completion, not a takeover.
    auto record = s.checker().get(s.key);
    if (record && *record && (*record)->token == s.outcome.token && (*record)->status == ProcessingStatus::kCompleted) {
      status = {};
      answered = {};
    }
  }
  if (span && !status) span->set_error(status.error().to_string());
  span.reset();
  if (status) {
    s.finished = true;
    s.report(HandlerOutcome::kCompleted, answered);
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
  require_sync(s, "mark_failed");
  const bool retryable = kind == FailureKind::kRetryable;
  if (s.unprotected) {
    s.finished = true;
    s.report(retryable ? HandlerOutcome::kFailedRetryable : HandlerOutcome::kFailedTerminal);
    return;
  }
  s.stop_heartbeat();
  Status status = write_with_retry([&] { return s.checker().fail(s.key, s.outcome.token, error, retryable); });
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
  s.checker().checkpoint(s.key, s.outcome.token, Checkpoint{std::string(name), std::string(data)}).value();
}

void ProcessingContext::checkpoint_async(std::string_view name, std::string_view data, StatusCallback done) {
  detail::ContextState& s = *state_;
  require_owner(s, "checkpoint_async");
  if (s.unprotected) {
    done(Status{});
    return;
  }
  s.checker().checkpoint_async(s.key, s.outcome.token, Checkpoint{std::string(name), std::string(data)},
                               std::move(done));
}

void ProcessingContext::extend() {
  detail::ContextState& s = *state_;
  require_owner(s, "extend");
  if (s.unprotected) return;
  s.checker().extend(s.key, s.outcome.token).value();
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
  auto core = std::make_shared<detail::ProcessorCore>();
  core->checker = checker_;
  core->key_options = checker_->options().key;
  if (options_.scope) core->key_options.scope = *options_.scope;
  if (options_.key_extractor) core->key_options.extractor = options_.key_extractor;
  core->heartbeat = options_.heartbeat;
  const auto interval =
      options_.heartbeat_interval.count() > 0 ? options_.heartbeat_interval : checker_->options().lease / 3;
  core->keeper = std::make_shared<detail::LeaseKeeper>(std::max(interval, std::chrono::milliseconds(1)));
  core->classify =
      options_.classify_failure ? options_.classify_failure : FailureClassifier(default_failure_classifier);
  core->executor = options_.handler_executor;
  core_ = std::move(core);
}

IdempotentEventProcessor::~IdempotentEventProcessor() = default;

FailureKind IdempotentEventProcessor::classify(const std::exception_ptr& error) const { return core_->classify(error); }

ProcessingContext IdempotentEventProcessor::process(const Envelope& envelope) {
  return process(envelope, options_.wait_for_in_progress.value_or(std::chrono::milliseconds(0)));
}

ProcessingContext IdempotentEventProcessor::process(const Envelope& envelope,
                                                    std::chrono::milliseconds wait_for_in_progress) {
  const detail::ProcessorCore& core = *core_;
  auto state = std::make_unique<detail::ContextState>();
  state->core = core_;

  detail::Clock::time_point answered{};
  auto claim = detail::CheckerAccess::claim(*checker_, envelope, core.key_options,
                                            core.observer() != nullptr ? &answered : nullptr);
  if (!claim) {
    const Error& error = claim.error();
    if (error.retryable() && checker_->options().outage_policy == OutagePolicy::kFailOpen) {
      if (Observer* observer = core.observer()) observer->on_fail_open(core.key_options.scope, error);
      state->unprotected = true;
      state->outcome.status = ClaimStatus::kAcquired;
      auto key = checker_->key_for(envelope, core.key_options);
      state->key = key ? std::move(*key) : envelope.effective_key();
      if (core.observer() != nullptr) state->started = detail::Clock::now();
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
      auto again = checker_->claim(envelope, core.key_options);
      if (!again) throw_error(std::move(again).error());
      state->outcome = std::move(again->outcome);
      answered = {};
    } else {
      state->outcome.record = std::move(*waited);  // the owner's latest lease
    }
  }

  switch (state->outcome.status) {
    case ClaimStatus::kMismatch:
      throw KeyMismatchError(Error(ErrorCode::kMismatch,
                                   "idempotency key '" + state->key + "' was already used with a different payload"));
    case ClaimStatus::kAcquired: state->begin_handler(envelope, answered); break;
    case ClaimStatus::kCompleted:
    case ClaimStatus::kFailed:
    case ClaimStatus::kInProgress: break;
  }
  return ProcessingContext(std::move(state));
}

// --- Asynchronous handlers ---------------------------------------------------
//
// process_async() is a chain of store callbacks, none of which blocks:
//   claim_async -> (executor) handler -> Completion -> release the heartbeat
//   -> complete_async / fail_async [-> retry from the keeper thread]
//   [-> get_async: was a "lost" lease our own earlier write?] -> on_done.
// Each step holds the AsyncState by shared_ptr, so it lives exactly as long
// as someone may still act on it.

namespace detail {

namespace {
constexpr std::string_view kAbandonedError =
    "abandoned: the asynchronous handler dropped its Completion without calling it";
}  // namespace

struct AsyncState {
  AsyncState() = default;
  AsyncState(const AsyncState&) = delete;
  AsyncState& operator=(const AsyncState&) = delete;
  // A verdict always releases the heartbeat first; only a failure between
  // acquisition and the first Completion (out of memory) gets here with the
  // lease still registered, and the keeper must not keep a dangling ticket.
  ~AsyncState();

  std::shared_ptr<const ProcessorCore> core;
  IdempotentEventProcessor::AsyncHandler handler;
  IdempotentEventProcessor::AsyncCallback on_done;
  // The caller's envelope is borrowed when the handler is sure to run
  // before process_async() returns (inline store, no executor); otherwise
  // it is copied.
  std::optional<Envelope> owned_envelope;
  const Envelope* envelope = nullptr;
  std::optional<ProcessingContext> ctx;  // once acquired
  // Set by the first verdict (or the abandonment); later ones are ignored.
  std::atomic<bool> decided{false};

  // The verdict being written.
  enum class Verdict : std::uint8_t { kComplete, kFail, kAbandon };
  Verdict verdict = Verdict::kComplete;
  std::string payload;  // the result, or the handler's error text
  bool retryable = true;
  std::exception_ptr handler_error;
  int attempt = 0;  // writes tried so far
  bool wrote = false;
  Status written;  // the last write's answer
  std::unique_ptr<SpanScope> write_span;
};

// The Completion's shared part: when the last copy goes without a verdict,
// the claim is abandoned (FAILED, retryable).
struct CompletionHandle {
  explicit CompletionHandle(std::shared_ptr<AsyncState> s) : state(std::move(s)) {}
  CompletionHandle(const CompletionHandle&) = delete;
  CompletionHandle& operator=(const CompletionHandle&) = delete;
  ~CompletionHandle();
  std::shared_ptr<AsyncState> state;
};

struct GuardAccess {
  using Verdict = AsyncState::Verdict;
  using Outcome = IdempotentEventProcessor::AsyncOutcome;

  static ContextState& state(const AsyncState& st) noexcept { return *st.ctx->state_; }

  static void deliver(const std::shared_ptr<AsyncState>& st, Outcome outcome) noexcept {
    if (!st->on_done) return;
    try {
      st->on_done(std::move(outcome));
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: on_done's exceptions go nowhere
    }
  }

  static IdempotentEventProcessor::Completion completion_for(const std::shared_ptr<AsyncState>& st) {
    IdempotentEventProcessor::Completion completion;
    completion.handle_ = std::make_shared<CompletionHandle>(st);
    return completion;
  }

  static void start(const IdempotentEventProcessor& processor, const Envelope& envelope,
                    IdempotentEventProcessor::AsyncHandler handler, IdempotentEventProcessor::AsyncCallback on_done) {
    auto st = std::make_shared<AsyncState>();
    st->core = processor.core_;
    st->handler = std::move(handler);
    st->on_done = std::move(on_done);
    if (!processor.checker_->store().async_is_native() && !st->core->executor) {
      st->envelope = &envelope;
    } else {
      st->envelope = &st->owned_envelope.emplace(envelope);
    }
    st->core->checker->claim_async(*st->envelope, st->core->key_options,
                                   [st](Result<Claim> claim) { claimed(st, std::move(claim)); });
  }

  static void claimed(const std::shared_ptr<AsyncState>& st, Result<Claim> claim) {
    const ProcessorCore& core = *st->core;
    auto state = std::make_unique<ContextState>();
    state->core = st->core;
    state->async = true;
    Outcome outcome;
    if (!claim) {
      const Error& error = claim.error();
      if (error.retryable() && core.checker->options().outage_policy == OutagePolicy::kFailOpen) {
        if (Observer* observer = core.observer()) observer->on_fail_open(core.key_options.scope, error);
        state->unprotected = true;
        state->outcome.status = ClaimStatus::kAcquired;
        auto key = core.checker->key_for(*st->envelope, core.key_options);
        state->key = key ? std::move(*key) : st->envelope->effective_key();
        if (core.observer() != nullptr) state->started = Clock::now();
        st->ctx.emplace(ProcessingContext(std::move(state)));
        dispatch(st);
        return;
      }
      outcome.error = error.to_string();
      outcome.exception = to_exception(std::move(claim).error());
      deliver(st, std::move(outcome));
      return;
    }
    state->key = std::move(claim->key);
    state->outcome = std::move(claim->outcome);
    outcome.status = state->outcome.status;
    outcome.key = state->key;
    switch (state->outcome.status) {
      case ClaimStatus::kAcquired:
        state->begin_handler(*st->envelope, Clock::time_point{});
        st->ctx.emplace(ProcessingContext(std::move(state)));
        dispatch(st);
        return;
      case ClaimStatus::kMismatch: {
        Error error(ErrorCode::kMismatch,
                    "idempotency key '" + outcome.key + "' was already used with a different payload");
        outcome.error = error.to_string();
        outcome.exception = to_exception(std::move(error));
        break;
      }
      case ClaimStatus::kCompleted:
        if (state->outcome.record) outcome.result = state->outcome.record->result;
        break;
      case ClaimStatus::kFailed:
        if (state->outcome.record) outcome.error = state->outcome.record->error;
        break;
      case ClaimStatus::kInProgress: break;
    }
    outcome.record = std::move(state->outcome.record);
    deliver(st, std::move(outcome));
  }

  static void dispatch(const std::shared_ptr<AsyncState>& st) {
    // The task holds a Completion, not the bare state: an executor that
    // drops the task without running it (shut down) abandons the claim
    // instead of leaking it.
    IdempotentEventProcessor::Completion completion = completion_for(st);
    if (!st->core->executor) {
      run_handler(completion);
      return;
    }
    try {
      st->core->executor([completion] { run_handler(completion); });
    } catch (...) {
      completion.fail(std::current_exception());
    }
  }

  static void run_handler(const IdempotentEventProcessor::Completion& completion) {
    AsyncState& st = *completion.handle_->state;
    try {
      st.handler(*st.envelope, *st.ctx, completion);
    } catch (...) {
      completion.fail(std::current_exception());
    }
  }

  // The first verdict: stop the heartbeat (without waiting for a renewal in
  // flight), then write.
  static void decide(const std::shared_ptr<AsyncState>& st, Verdict verdict, std::string payload, bool retryable,
                     std::exception_ptr error) {
    st->verdict = verdict;
    st->payload = std::move(payload);
    st->retryable = retryable;
    st->handler_error = std::move(error);
    ContextState& s = state(*st);
    if (verdict == Verdict::kComplete && !s.unprotected) st->write_span = s.start_span(trace::kSpanComplete);
    if (s.registered) {
      s.registered = false;
      s.core->keeper->remove_then(s.ticket, [st] { proceed(st); });
    } else {
      proceed(st);
    }
  }

  static void proceed(const std::shared_ptr<AsyncState>& st) {
    ContextState& s = state(*st);
    // Nothing to write without a claim, nor for an abandoned claim whose
    // lease the heartbeat already found taken over.
    if (s.unprotected || (st->verdict == Verdict::kAbandon && s.lease_lost())) {
      finish(st, Status{});
      return;
    }
    write(st);
  }

  static void write(const std::shared_ptr<AsyncState>& st) {
    ContextState& s = state(*st);
    st->wrote = true;
    auto done = [st](Status status) { written(st, std::move(status)); };
    switch (st->verdict) {
      case Verdict::kComplete: s.checker().complete_async(s.key, s.outcome.token, st->payload, std::move(done)); break;
      case Verdict::kFail:
        s.checker().fail_async(s.key, s.outcome.token, st->payload, st->retryable, std::move(done));
        break;
      case Verdict::kAbandon:
        s.checker().fail_async(s.key, s.outcome.token, kAbandonedError, true, std::move(done));
        break;
    }
  }

  static void written(const std::shared_ptr<AsyncState>& st, Status status) {
    if (!status && status.error().retryable() && ++st->attempt < kWriteAttempts) {
      const auto delay = kFirstRetryDelay * (1 << (st->attempt - 1));
      st->core->keeper->schedule(Clock::now() + delay, [st] { write(st); });
      return;
    }
    if (!status && status.error().code() == ErrorCode::kLeaseLost && st->verdict == Verdict::kComplete) {
      // As in mark_completed(): a retried write may have landed before its
      // reply was lost; that is our completion, not a takeover.
      st->written = std::move(status);
      ContextState& s = state(*st);
      s.checker().get_async(s.key, [st](Result<std::optional<IdempotencyRecord>> record) {
        const Token token = state(*st).outcome.token;
        if (record && *record && (*record)->token == token && (*record)->status == ProcessingStatus::kCompleted) {
          finish(st, Status{});
        } else {
          finish(st, std::move(st->written));
        }
      });
      return;
    }
    finish(st, std::move(status));
  }

  static void finish(const std::shared_ptr<AsyncState>& st, Status status) {
    ContextState& s = state(*st);
    Outcome outcome;
    outcome.status = ClaimStatus::kAcquired;
    outcome.key = s.key;
    outcome.unprotected = s.unprotected;
    const bool ok = status.ok();
    const ErrorCode code = ok ? ErrorCode::kOk : status.error().code();
    s.finished = true;
    switch (st->verdict) {
      case Verdict::kComplete:
        if (st->write_span) {
          if (!ok) st->write_span->set_error(status.error().to_string());
          st->write_span.reset();
        }
        if (ok) {
          s.report(HandlerOutcome::kCompleted);
          outcome.result = std::move(st->payload);
        } else {
          if (code == ErrorCode::kLeaseLost) s.report(HandlerOutcome::kLeaseLost);
          // The checker has marked the record FAILED (retryable).
          if (code == ErrorCode::kResultTooLarge) s.report(HandlerOutcome::kFailedRetryable);
          outcome.error = status.error().to_string();
          outcome.exception = to_exception(std::move(status).error());
        }
        break;
      case Verdict::kFail:
        if (ok) {
          s.report(st->retryable ? HandlerOutcome::kFailedRetryable : HandlerOutcome::kFailedTerminal);
        } else if (code == ErrorCode::kLeaseLost) {
          s.report(HandlerOutcome::kLeaseLost);
        }
        // The handler's own error is what the caller needs to see.
        outcome.error = std::move(st->payload);
        outcome.exception = st->handler_error;
        break;
      case Verdict::kAbandon:
        if (st->wrote) s.report(HandlerOutcome::kAbandoned);
        outcome.error = std::string(kAbandonedError);
        outcome.exception = std::make_exception_ptr(std::runtime_error(outcome.error.value()));
        break;
    }
    deliver(st, std::move(outcome));
  }
};

AsyncState::~AsyncState() {
  if (!ctx) return;
  ContextState& s = GuardAccess::state(*this);
  if (s.registered) {
    try {
      s.core->keeper->remove(s.ticket);
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing better to do in a destructor
    }
    s.registered = false;
  }
}

CompletionHandle::~CompletionHandle() {
  if (state->decided.exchange(true)) return;
  try {
    GuardAccess::decide(state, AsyncState::Verdict::kAbandon, std::string(), true, nullptr);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; the lease expiry recovers the key
  }
}

}  // namespace detail

void IdempotentEventProcessor::Completion::succeed(std::string_view result) const {
  if (!handle_) return;
  const auto& st = handle_->state;
  if (st->decided.exchange(true)) return;
  detail::GuardAccess::decide(st, detail::AsyncState::Verdict::kComplete, std::string(result), true, nullptr);
}

void IdempotentEventProcessor::Completion::fail(const std::exception_ptr& error) const {
  if (!handle_) return;
  const auto& st = handle_->state;
  if (st->decided.exchange(true)) return;
  FailureKind kind = FailureKind::kRetryable;
  try {
    kind = st->core->classify(error);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a classifier that throws leaves the failure retryable
  }
  detail::GuardAccess::decide(st, detail::AsyncState::Verdict::kFail, describe(error), kind == FailureKind::kRetryable,
                              error);
}

void IdempotentEventProcessor::process_async(const Envelope& envelope, AsyncHandler handler, AsyncCallback on_done) {
  detail::GuardAccess::start(*this, envelope, std::move(handler), std::move(on_done));
}

}  // namespace idem
