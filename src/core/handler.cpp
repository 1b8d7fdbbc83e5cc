#include "idem/core/handler.h"

#include <mutex>

namespace idem {

namespace {

// apply_duplicate_options() turns a replay into what `options` ask for; the
// wrapper and process_with_idempotency(envelope, handler, options) share it.
void apply_duplicate_options(ProcessResult& outcome, const HandlerOptions& options) {
  if (outcome.disposition != Disposition::kReplayed) return;
  if (!options.skip_on_duplicate) throw DuplicateEventError(outcome.key, ClaimStatus::kCompleted, outcome.result);
  if (!options.return_cached_result) outcome.result.reset();
}

}  // namespace

ProcessResult process_with_idempotency(IdempotentEventProcessor& processor, const Envelope& envelope,
                                       const StringHandler& handler) {
  const std::chrono::milliseconds wait = processor.options().wait_for_in_progress.value_or(kDefaultInProgressWait);
  const auto started = std::chrono::steady_clock::now();
  ProcessingContext ctx = processor.process(envelope, wait);
  ProcessResult outcome;
  outcome.key = ctx.key();
  if (ctx.should_process()) {
    std::string result;
    try {
      result = handler(envelope, ctx);
    } catch (...) {
      const std::exception_ptr error = std::current_exception();
      if (!ctx.finished()) {
        std::string message;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          message = e.what();
        } catch (...) {
          message = "unknown exception";
        }
        try {
          ctx.mark_failed(message, processor.classify(error));
        } catch (...) {
          // The handler's exception is the one the caller must see; a lost
          // lease or a store blip here is recovered by the lease expiry.
        }
      }
      throw;
    }
    if (!ctx.finished()) ctx.mark_completed(result);
    outcome.disposition = ctx.is_unprotected() ? Disposition::kUnprotected : Disposition::kExecuted;
    outcome.result = std::move(result);
    return outcome;
  }
  switch (ctx.status()) {
    case ClaimStatus::kCompleted:
      outcome.disposition = Disposition::kReplayed;
      outcome.result = ctx.cached_result();
      return outcome;
    case ClaimStatus::kFailed:
      throw TerminalError(ctx.cached_error().value_or("failed terminally (no message stored)"));
    default:
      // Never a normal return: a caller that acks every return would ack
      // this delivery, and lose the event if the original then dies.
      throw EventInProgressError(
          ctx.key(), ctx.record(),
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started));
  }
}

ProcessResult process_with_idempotency(const Envelope& envelope, const StringHandler& handler,
                                       const HandlerOptions& options) {
  IdempotentEventProcessor processor(options.checker ? options.checker : get_idempotency_checker(), options.processor);
  ProcessResult outcome = process_with_idempotency(processor, envelope, handler);
  apply_duplicate_options(outcome, options);
  return outcome;
}

namespace detail {

namespace {
// What a wrapper keeps: the user's handler, the options, and a processor made
// on first use, so that a wrapper declared at startup does not open the
// default store before the program configured it.
template <typename Handler>
struct Wrapped {
  Wrapped(Handler h, HandlerOptions o) : handler(std::move(h)), options(std::move(o)) {}
  IdempotentEventProcessor& processor() {
    std::call_once(once, [&] {
      auto checker = options.checker ? options.checker : get_idempotency_checker();
      processor_ = std::make_unique<IdempotentEventProcessor>(std::move(checker), options.processor);
    });
    return *processor_;
  }
  Handler handler;
  HandlerOptions options;
  std::once_flag once;
  std::unique_ptr<IdempotentEventProcessor> processor_;
};
}  // namespace

std::function<std::optional<std::string>(const Envelope&)> make_idempotent_handler(StringHandler handler,
                                                                                   HandlerOptions options) {
  auto shared = std::make_shared<Wrapped<StringHandler>>(std::move(handler), std::move(options));
  return [shared](const Envelope& envelope) -> std::optional<std::string> {
    ProcessResult outcome = process_with_idempotency(shared->processor(), envelope, shared->handler);
    apply_duplicate_options(outcome, shared->options);
    return std::move(outcome.result);
  };
}

AsyncIdempotentHandler make_async_idempotent_handler(IdempotentEventProcessor::AsyncHandler handler,
                                                     HandlerOptions options) {
  auto shared =
      std::make_shared<Wrapped<IdempotentEventProcessor::AsyncHandler>>(std::move(handler), std::move(options));
  return [shared](const Envelope& envelope, AsyncResultCallback done) {
    IdempotentEventProcessor* processor = nullptr;
    try {
      processor = &shared->processor();
    } catch (...) {
      // No checker (a bad IDEM_STORE_URL, an invalid option): reported
      // like any other error, through the callback.
      AsyncHandlerResult result;
      result.error = std::current_exception();
      if (done) done(std::move(result));
      return;
    }
    processor->process_async(
        envelope, shared->handler, [shared, done = std::move(done)](IdempotentEventProcessor::AsyncOutcome outcome) {
          AsyncHandlerResult result;
          result.key = outcome.key;
          try {
            switch (outcome.status) {
              case ClaimStatus::kAcquired:
                if (outcome.exception) std::rethrow_exception(outcome.exception);
                result.disposition = outcome.unprotected ? Disposition::kUnprotected : Disposition::kExecuted;
                result.result = std::move(outcome.result);
                break;
              case ClaimStatus::kCompleted: {
                ProcessResult replay{Disposition::kReplayed, std::move(outcome.result), outcome.key};
                apply_duplicate_options(replay, shared->options);
                result.disposition = Disposition::kReplayed;
                result.result = std::move(replay.result);
                break;
              }
              case ClaimStatus::kFailed:
                throw TerminalError(outcome.error.value_or("failed terminally (no message stored)"));
              case ClaimStatus::kInProgress:
                throw EventInProgressError(outcome.key, std::move(outcome.record), std::chrono::milliseconds(0));
              case ClaimStatus::kMismatch:
                if (outcome.exception) std::rethrow_exception(outcome.exception);
                throw KeyMismatchError(Error(ErrorCode::kMismatch, outcome.error.value_or("key reused")));
            }
          } catch (...) {
            result.error = std::current_exception();
            result.result.reset();
          }
          if (done) done(std::move(result));
        });
  };
}

}  // namespace detail
}  // namespace idem
