#include "idem/core/handler.h"

#include <mutex>

namespace idem {

ProcessResult process_with_idempotency(IdempotentEventProcessor& processor, const Envelope& envelope,
                                       const StringHandler& handler) {
  ProcessingContext ctx = processor.process(envelope);
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
    default: outcome.disposition = Disposition::kInProgress; return outcome;
  }
}

ProcessResult process_with_idempotency(const Envelope& envelope, const StringHandler& handler,
                                       const HandlerOptions& options) {
  IdempotentEventProcessor processor(options.checker ? options.checker : get_idempotency_checker(), options.processor);
  return process_with_idempotency(processor, envelope, handler);
}

namespace detail {

std::function<std::optional<std::string>(const Envelope&)> make_idempotent_handler(StringHandler handler,
                                                                                   HandlerOptions options) {
  // The processor is made on first use so that a wrapper declared at startup
  // does not open the default store before the program configured it.
  struct Shared {
    StringHandler handler;
    HandlerOptions options;
    std::once_flag once;
    std::unique_ptr<IdempotentEventProcessor> processor;
  };
  auto shared = std::make_shared<Shared>();
  shared->handler = std::move(handler);
  shared->options = std::move(options);
  return [shared](const Envelope& envelope) -> std::optional<std::string> {
    std::call_once(shared->once, [&] {
      auto checker = shared->options.checker ? shared->options.checker : get_idempotency_checker();
      shared->processor = std::make_unique<IdempotentEventProcessor>(std::move(checker), shared->options.processor);
    });
    ProcessResult outcome = process_with_idempotency(*shared->processor, envelope, shared->handler);
    switch (outcome.disposition) {
      case Disposition::kExecuted:
      case Disposition::kUnprotected: return outcome.result;
      case Disposition::kReplayed:
        if (!shared->options.skip_on_duplicate) {
          throw DuplicateEventError(outcome.key, ClaimStatus::kCompleted, outcome.result);
        }
        return shared->options.return_cached_result ? outcome.result : std::nullopt;
      case Disposition::kInProgress:
        if (!shared->options.skip_on_duplicate) {
          throw DuplicateEventError(outcome.key, ClaimStatus::kInProgress, std::nullopt);
        }
        return std::nullopt;
    }
    return std::nullopt;
  };
}

}  // namespace detail
}  // namespace idem
