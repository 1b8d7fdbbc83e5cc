// IdempotencyMiddleware: one request through the guard.
//
// Why the synchronous guard (IdempotentEventProcessor::process) and not the
// store's *_async API: cpp-httplib runs each connection on a worker thread of
// its own pool and expects the handler to fill the Response before it
// returns; there is no way to suspend a request and answer it later from
// another thread. The worker has to wait for the claim either way, so the
// asynchronous form would only add a hand-off. The guard also brings the lease
// heartbeat for slow handlers, the spans and handler metrics, the fail-open
// policy and the "abandoned → FAILED, retryable" safety net for free.
#include <httplib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <mutex>
#include <string>
#include <vector>

#include "idem/core/envelope.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/core/tracing.h"
#include "idem/integrations/http.h"
#include "integrations/http/internal.h"

namespace idem::http {
namespace detail {

struct RouteCounters {
  explicit RouteCounters(std::string route_name) : name(std::move(route_name)) {}
  std::string name;
  std::array<std::atomic<std::uint64_t>, kRequestOutcomeCount> counts{};
};

struct MiddlewareState {
  std::shared_ptr<IdempotencyChecker> checker;
  MiddlewareOptions options;
  std::unique_ptr<IdempotentEventProcessor> processor;
  std::vector<std::string> replayed_headers;  // lower-case

  mutable std::mutex mutex;  // guards routes
  std::vector<std::shared_ptr<RouteCounters>> routes;

  // Routes registered twice under one name (two servers, say) share their
  // counters, so a scrape never shows the same series twice.
  std::shared_ptr<RouteCounters> counters_for(const std::string& name) {
    std::lock_guard lock(mutex);
    for (const auto& route : routes) {
      if (route->name == name) return route;
    }
    return routes.emplace_back(std::make_shared<RouteCounters>(name));
  }
};

struct Route {
  std::shared_ptr<MiddlewareState> state;
  std::shared_ptr<RouteCounters> counters;
  Handler handler;
  RouteOptions options;
  std::vector<nlohmann::json::json_pointer> ignored;
};

}  // namespace detail

namespace {

// Span and attribute names of the OpenTelemetry HTTP conventions.
constexpr std::string_view kSpanRequest = "idem.http.request";
constexpr std::string_view kHttpMethod = "http.request.method";
constexpr std::string_view kHttpRoute = "http.route";
constexpr std::string_view kHttpStatus = "http.response.status_code";

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::string retry_after_seconds(std::chrono::milliseconds delay) {
  return std::to_string(std::max<std::int64_t>(1, (delay.count() + 999) / 1000));
}

// The namespace is escaped so that no namespace/key pair can collide with
// another: '/' separates, and '%' escapes.
std::string namespaced_key(std::string_view space, std::string_view key) {
  if (space.empty()) return std::string(key);
  std::string out;
  out.reserve(space.size() + key.size() + 1);
  for (const char c : space) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  out += '/';
  out += key;
  return out;
}

// One request on an idempotent route.
class Exchange {
 public:
  Exchange(const detail::Route& route, const httplib::Request& request, httplib::Response& response)
      : route_(route), state_(*route.state), options_(state_.options), request_(request), response_(response) {}

  RequestOutcome run();
  // Set when the handler threw and the options say to rethrow.
  std::exception_ptr rethrow{};

 private:
  RequestOutcome answer(RequestOutcome outcome, int status, std::string_view type, std::string title,
                        std::string detail, bool retry_after = false);
  RequestOutcome store_failure(const Error& error);
  RequestOutcome replay(const std::optional<std::string>& result);
  RequestOutcome execute(ProcessingContext& ctx);
  RequestOutcome handler_threw(std::exception_ptr error);
  void fail_quietly(ProcessingContext& ctx, std::string_view why);

  const detail::Route& route_;
  const detail::MiddlewareState& state_;
  const MiddlewareOptions& options_;
  const httplib::Request& request_;
  httplib::Response& response_;
};

RequestOutcome Exchange::answer(RequestOutcome outcome, int status, std::string_view type, std::string title,
                                std::string detail, bool retry_after) {
  write_problem(response_,
                Problem{.status = status,
                        .type = std::string(type),
                        .title = std::move(title),
                        .detail = std::move(detail),
                        .extensions = {}},
                options_.problem_type_base);
  if (retry_after) response_.set_header("Retry-After", retry_after_seconds(options_.retry_after));
  return outcome;
}

RequestOutcome Exchange::store_failure(const Error& error) {
  // Branch on the code, not on the exception class: the codes are the stable
  // part of the error model. Claim statuses that are not errors come through
  // here too (as their codes), so that each answer is written once.
  if (error.code() == ErrorCode::kMismatch) {
    return answer(RequestOutcome::kMismatch, 422, problem::kKeyMismatch,
                  "Idempotency-Key reused for a different request",
                  "This key was first used with another method, path or body. Use a new key for a new request.");
  }
  if (error.code() == ErrorCode::kInProgress) {
    return answer(RequestOutcome::kInProgress, 409, problem::kKeyInUse,
                  "A request with this Idempotency-Key is still being processed",
                  "Retry after the Retry-After delay: the first request's response will then be replayed.", true);
  }
  if (error.code() == ErrorCode::kInvalidArgument) {
    return answer(RequestOutcome::kKeyInvalid, 400, problem::kKeyInvalid, "Idempotency-Key is invalid",
                  error.message());
  }
  if (error.retryable() || error.code() == ErrorCode::kResourceExhausted) {
    return answer(RequestOutcome::kStoreUnavailable, 503, problem::kStoreUnavailable,
                  "The idempotency store is unavailable",
                  "The request was not processed. Retry later with the same Idempotency-Key.", true);
  }
  return answer(RequestOutcome::kStoreError, 500, problem::kStoreError, "The idempotency store failed",
                "The request was not processed (" + std::string(to_string(error.code())) + ").");
}

RequestOutcome Exchange::replay(const std::optional<std::string>& result) {
  auto stored = StoredResponse::decode(result ? std::string_view(*result) : std::string_view());
  if (!stored) {
    return answer(RequestOutcome::kStoreError, 500, problem::kStoredResponseUnreadable,
                  "The stored response cannot be replayed",
                  "The key holds a record this service cannot read (written by another entry point or version).");
  }
  response_.status = stored->status;
  for (const auto& [name, value] : stored->headers) response_.set_header(name, value);
  response_.body = std::move(stored->body);
  response_.set_header(std::string(kReplayedHeader), "true");
  return RequestOutcome::kReplayed;
}

void Exchange::fail_quietly(ProcessingContext& ctx, std::string_view why) {
  try {
    ctx.mark_failed(why, FailureKind::kRetryable);
  } catch (...) {
    // The response is what the client needs now; an unrecorded failure ends
    // with the lease, and the key is retried then.
  }
}

RequestOutcome Exchange::handler_threw(std::exception_ptr error) {
  if (options_.rethrow_handler_exceptions) {
    rethrow = std::move(error);
    return RequestOutcome::kHandlerThrew;
  }
  // Whatever the handler had set is discarded: a half-built response must not
  // reach the client.
  std::string version = std::move(response_.version);
  response_ = httplib::Response();
  response_.version = std::move(version);
  return answer(RequestOutcome::kHandlerThrew, 500, problem::kHandlerError, "The request handler failed",
                "The request was not completed. It may be retried with the same Idempotency-Key.");
}

RequestOutcome Exchange::execute(ProcessingContext& ctx) {
  try {
    route_.handler(request_, response_);
  } catch (...) {
    auto error = std::current_exception();
    fail_quietly(ctx, "handler threw: " + describe(error));
    return handler_threw(std::move(error));
  }
  if (response_.status == -1) response_.status = 200;  // what cpp-httplib sends for "not set"
  if (ctx.is_unprotected()) {
    ctx.mark_completed("");  // records nothing; counts the execution
    return RequestOutcome::kUnprotected;
  }
  if (response_.status >= 500) {
    fail_quietly(ctx, "HTTP " + std::to_string(response_.status) + " response, not stored");
    return RequestOutcome::kNotStored;
  }
  if (response_.content_provider_) {
    fail_quietly(ctx, "a streamed response (content provider) cannot be stored");
    return RequestOutcome::kNotStored;
  }
  StoredResponse stored;
  stored.status = response_.status;
  for (const auto& [name, value] : response_.headers) {
    if (std::find(state_.replayed_headers.begin(), state_.replayed_headers.end(), lower(name)) !=
        state_.replayed_headers.end()) {
      stored.headers.emplace_back(name, value);
    }
  }
  stored.body = response_.body;
  try {
    ctx.mark_completed(stored.encode());
  } catch (const std::exception&) {
    // Lease lost, result too large (the record is then FAILED, retryable) or
    // the store went away after the handler ran: the client still gets the
    // response it caused; the observer has counted the failure.
    return RequestOutcome::kNotStored;
  }
  return RequestOutcome::kExecuted;
}

RequestOutcome Exchange::run() {
  const std::size_t fields = request_.get_header_value_count(options_.header);
  if (fields == 0) {
    if (route_.options.require_key) {
      return answer(RequestOutcome::kKeyMissing, 400, problem::kKeyMissing, "Idempotency-Key is missing",
                    "This route requires an " + options_.header +
                        " header: a unique value per logical request, sent again unchanged on every retry.");
    }
    try {
      route_.handler(request_, response_);
    } catch (...) {
      return handler_threw(std::current_exception());
    }
    return RequestOutcome::kPassThrough;
  }
  if (fields > 1) {
    return answer(RequestOutcome::kKeyInvalid, 400, problem::kKeyInvalid, "Idempotency-Key is invalid",
                  "Send one " + options_.header + " field; this request has " + std::to_string(fields) + ".");
  }
  auto key = parse_idempotency_key(request_.get_header_value(options_.header), options_.max_key_length);
  if (!key) {
    return answer(RequestOutcome::kKeyInvalid, 400, problem::kKeyInvalid, "Idempotency-Key is invalid",
                  key.error().message());
  }

  Envelope envelope;
  try {
    if (route_.options.validate) {
      if (auto rejection = route_.options.validate(request_)) {
        write_problem(response_, *rejection, options_.problem_type_base);
        return RequestOutcome::kRejected;
      }
    }
    const std::string space = options_.key_namespace ? options_.key_namespace(request_) : std::string();
    envelope.idempotency_key = namespaced_key(space, *key);
    envelope.event_type = route_.counters->name;
    envelope.payload =
        R"({"request":")" + detail::fingerprint(request_, route_.options.fingerprint, route_.ignored) + R"("})";
  } catch (...) {
    return handler_threw(std::current_exception());
  }
  // The event id is logged and stored next to the key: keep personal data
  // out of it when the store only sees hashed keys.
  envelope.event_id = state_.checker->options().key.hash_keys ? sha256_hex(*envelope.idempotency_key).substr(0, 32)
                                                              : *envelope.idempotency_key;

  std::optional<ProcessingContext> ctx;
  try {
    ctx.emplace(state_.processor->process(envelope));
  } catch (const IdemError& e) {
    return store_failure(e.error());
  } catch (const std::exception& e) {
    return store_failure(Error(ErrorCode::kInternal, e.what()));
  }
  switch (ctx->status()) {
    case ClaimStatus::kAcquired: return execute(*ctx);
    case ClaimStatus::kCompleted: return replay(ctx->cached_result());
    case ClaimStatus::kInProgress: return store_failure(Error(ErrorCode::kInProgress, "in progress"));
    case ClaimStatus::kMismatch: return store_failure(Error(ErrorCode::kMismatch, "mismatch"));
    case ClaimStatus::kFailed:
      return answer(RequestOutcome::kOriginalFailed, 500, problem::kOriginalFailed,
                    "The original request failed permanently",
                    ctx->cached_error().value_or("The first request with this key failed and cannot be retried."));
  }
  return store_failure(Error(ErrorCode::kInternal, "unknown claim status"));
}

bool is_error(RequestOutcome outcome) {
  switch (outcome) {
    case RequestOutcome::kHandlerThrew:
    case RequestOutcome::kStoreUnavailable:
    case RequestOutcome::kStoreError:
    case RequestOutcome::kOriginalFailed: return true;
    default: return false;
  }
}

void serve(const detail::Route& route, const httplib::Request& request, httplib::Response& response) {
  const auto& observer = route.state->checker->options().observer;
  std::unique_ptr<SpanScope> span = observer ? observer->start_span(kSpanRequest) : nullptr;
  if (span) {
    span->set_attribute(kHttpMethod, request.method);
    span->set_attribute(kHttpRoute, route.counters->name);
    span->set_attribute(trace::kScope, route.state->options.scope);
  }
  Exchange exchange(route, request, response);
  const RequestOutcome outcome = exchange.run();
  route.counters->counts[static_cast<std::size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
  if (span) {
    span->set_attribute(kHttpStatus, static_cast<std::int64_t>(response.status));
    span->set_attribute(trace::kOutcome, to_string(outcome));
    if (is_error(outcome)) span->set_error(to_string(outcome));
    span.reset();
  }
  if (exchange.rethrow) std::rethrow_exception(exchange.rethrow);
}

}  // namespace

std::string_view to_string(RequestOutcome outcome) noexcept {
  switch (outcome) {
    case RequestOutcome::kExecuted: return "executed";
    case RequestOutcome::kNotStored: return "not_stored";
    case RequestOutcome::kHandlerThrew: return "handler_threw";
    case RequestOutcome::kReplayed: return "replayed";
    case RequestOutcome::kInProgress: return "in_progress";
    case RequestOutcome::kMismatch: return "mismatch";
    case RequestOutcome::kKeyMissing: return "key_missing";
    case RequestOutcome::kKeyInvalid: return "key_invalid";
    case RequestOutcome::kRejected: return "rejected";
    case RequestOutcome::kStoreUnavailable: return "store_unavailable";
    case RequestOutcome::kStoreError: return "store_error";
    case RequestOutcome::kOriginalFailed: return "original_failed";
    case RequestOutcome::kUnprotected: return "unprotected";
    case RequestOutcome::kPassThrough: return "pass_through";
  }
  return "unknown";
}

IdempotencyMiddleware::IdempotencyMiddleware(std::shared_ptr<IdempotencyChecker> checker, MiddlewareOptions options)
    : state_(std::make_shared<detail::MiddlewareState>()) {
  auto invalid = [](std::string message) { throw_error(Error(ErrorCode::kInvalidConfiguration, std::move(message))); };
  if (!checker) invalid("IdempotencyMiddleware needs a checker");
  if (!checker->options().validate_payload) {
    invalid(
        "IdempotencyMiddleware needs CheckerOptions::validate_payload: without fingerprints a reused key "
        "would replay the response of another request instead of answering 422");
  }
  if (options.header.empty()) invalid("MiddlewareOptions::header is empty");
  if (options.retry_after.count() < 0 || options.wait_for_in_progress.count() < 0) {
    invalid("MiddlewareOptions durations must not be negative");
  }
  state_->checker = std::move(checker);
  state_->options = std::move(options);
  state_->replayed_headers = {"content-type", "location"};
  for (const std::string& name : state_->options.replayed_headers) state_->replayed_headers.push_back(lower(name));
  state_->processor = std::make_unique<IdempotentEventProcessor>(
      state_->checker, ProcessorOptions{.scope = state_->options.scope,
                                        .key_extractor = {},
                                        .wait_for_in_progress = state_->options.wait_for_in_progress,
                                        .heartbeat = state_->options.heartbeat,
                                        .heartbeat_interval = {},
                                        .classify_failure = {}});
}

IdempotencyMiddleware::~IdempotencyMiddleware() = default;

Handler IdempotencyMiddleware::wrap(Handler handler, RouteOptions route) const {
  if (!handler) throw_error(Error(ErrorCode::kInvalidConfiguration, "IdempotencyMiddleware::wrap: handler is empty"));
  auto wrapped = std::make_shared<detail::Route>();
  wrapped->ignored = detail::parse_pointers(route.fingerprint.ignore_json_fields).value();
  wrapped->state = state_;
  wrapped->counters = state_->counters_for(route.name.empty() ? std::string("unnamed") : route.name);
  wrapped->handler = std::move(handler);
  wrapped->options = std::move(route);
  return [wrapped = std::shared_ptr<const detail::Route>(std::move(wrapped))](
             const httplib::Request& request, httplib::Response& response) { serve(*wrapped, request, response); };
}

namespace {
RouteOptions named(RouteOptions route, std::string_view method, const std::string& pattern) {
  if (route.name.empty()) route.name = std::string(method) + " " + pattern;
  return route;
}
}  // namespace

IdempotencyMiddleware& IdempotencyMiddleware::Post(httplib::Server& server, const std::string& pattern, Handler handler,
                                                   RouteOptions route) {
  server.Post(pattern, wrap(std::move(handler), named(std::move(route), "POST", pattern)));
  return *this;
}
IdempotencyMiddleware& IdempotencyMiddleware::Put(httplib::Server& server, const std::string& pattern, Handler handler,
                                                  RouteOptions route) {
  server.Put(pattern, wrap(std::move(handler), named(std::move(route), "PUT", pattern)));
  return *this;
}
IdempotencyMiddleware& IdempotencyMiddleware::Patch(httplib::Server& server, const std::string& pattern,
                                                    Handler handler, RouteOptions route) {
  server.Patch(pattern, wrap(std::move(handler), named(std::move(route), "PATCH", pattern)));
  return *this;
}
IdempotencyMiddleware& IdempotencyMiddleware::Delete(httplib::Server& server, const std::string& pattern,
                                                     Handler handler, RouteOptions route) {
  server.Delete(pattern, wrap(std::move(handler), named(std::move(route), "DELETE", pattern)));
  return *this;
}

std::uint64_t IdempotencyMiddleware::count(RequestOutcome outcome) const {
  std::lock_guard lock(state_->mutex);
  std::uint64_t total = 0;
  for (const auto& route : state_->routes) {
    total += route->counts[static_cast<std::size_t>(outcome)].load(std::memory_order_relaxed);
  }
  return total;
}

std::uint64_t IdempotencyMiddleware::count(RequestOutcome outcome, std::string_view route_name) const {
  std::lock_guard lock(state_->mutex);
  for (const auto& route : state_->routes) {
    if (route->name == route_name) return route->counts[static_cast<std::size_t>(outcome)].load();
  }
  return 0;
}

std::string IdempotencyMiddleware::render_metrics(std::string_view prefix) const {
  const std::string name = std::string(prefix) + "http_requests_total";
  std::string out = "# HELP " + name + " Requests on idempotent HTTP routes, by how the middleware answered.\n";
  out += "# TYPE " + name + " counter\n";
  std::lock_guard lock(state_->mutex);
  for (const auto& route : state_->routes) {
    for (std::size_t i = 0; i < kRequestOutcomeCount; ++i) {
      out += name + "{route=\"" + escape_label_value(route->name) + "\",outcome=\"" +
             std::string(to_string(static_cast<RequestOutcome>(i))) + "\"} " +
             std::to_string(route->counts[i].load(std::memory_order_relaxed)) + "\n";
    }
  }
  return out;
}

const MiddlewareOptions& IdempotencyMiddleware::options() const noexcept { return state_->options; }
const std::shared_ptr<IdempotencyChecker>& IdempotencyMiddleware::checker() const noexcept { return state_->checker; }

}  // namespace idem::http
