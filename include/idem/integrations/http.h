/// @file idem/integrations/http.h
/// @brief The `Idempotency-Key` header for cpp-httplib routes (component idem::http).
///
/// It follows the IETF httpapi draft "The Idempotency-Key HTTP Header Field"
/// and what clients of payment APIs expect:
///
/// @verbatim
///   missing key on a route that requires it      400 problem
///   empty, too long or malformed key              400 problem
///   same key while the first request still runs   409 problem + Retry-After
///   same key, another request (fingerprint)       422 problem
///   same key, first request finished              the stored status, headers
///                                                 and exact body, plus
///                                                 `Idempotent-Replayed: true`
///   store unreachable                             503 problem (fail-closed), or
///                                                 the handler runs unprotected
///                                                 (CheckerOptions::outage_policy
///                                                 = kFailOpen)
/// @endverbatim
///
/// A 5xx response or a handler that throws is not stored: the key stays usable
/// and the next request runs the handler again. A request that the route's
/// `validate` hook rejects never reaches the store at all. Every error is an
/// RFC 9457 `application/problem+json` document with a stable `type`.
///
/// @code
/// auto checker = idem::IdempotencyChecker::from_url("redis://127.0.0.1:6379").value();
/// idem::http::IdempotencyMiddleware idempotency(checker);
/// httplib::Server server;
/// idempotency.Post(server, "/payments", create_payment,
///                  {.validate = [](const httplib::Request& r) { return check_payment(r.body); }});
/// // or, on a route you register yourself:
/// server.Put("/orders/(\\d+)", idempotency.wrap(put_order, {.name = "PUT /orders"}));
/// @endcode
///
/// Works on every store: only the checker's public API is used. Handlers run on
/// cpp-httplib's worker threads (one per connection), and the middleware calls
/// the store synchronously from there.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/error.h"

namespace httplib {
struct Request;
struct Response;
class Server;
}  // namespace httplib

namespace idem::http {

/// Handler is httplib::Server::Handler, spelled out so that this header does
/// not need <httplib.h>.
using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

/// The header added to a replayed response (never to the first one).
inline constexpr std::string_view kReplayedHeader = "Idempotent-Replayed";
/// The Content-Type of every error the middleware answers (RFC 9457).
inline constexpr std::string_view kProblemContentType = "application/problem+json";

// --- Problem details (RFC 9457) ------------------------------------------------

/// The stable problem types (the last segment of `type`; see
/// MiddlewareOptions::problem_type_base).
namespace problem {
inline constexpr std::string_view kKeyMissing = "idempotency-key-missing";      ///< 400
inline constexpr std::string_view kKeyInvalid = "idempotency-key-invalid";      ///< 400
inline constexpr std::string_view kInvalidRequest = "invalid-request";          ///< 400, from validate hooks
inline constexpr std::string_view kKeyInUse = "idempotency-key-in-use";         ///< 409
inline constexpr std::string_view kKeyMismatch = "idempotency-key-mismatch";    ///< 422
inline constexpr std::string_view kOriginalFailed = "original-request-failed";  ///< 500
inline constexpr std::string_view kHandlerError = "handler-error";              ///< 500
inline constexpr std::string_view kStoredResponseUnreadable = "stored-response-unreadable";  ///< 500
inline constexpr std::string_view kStoreError = "store-error";                               ///< 500
inline constexpr std::string_view kStoreUnavailable = "store-unavailable";                   ///< 503
}  // namespace problem

/// Problem is an RFC 9457 problem details object. `type` holds either a full
/// URI or one of the short names above, which the middleware completes with
/// MiddlewareOptions::problem_type_base.
struct Problem {
  int status = 400;      ///< the HTTP status, repeated in the document
  std::string type{};    ///< a URI, or a short name from idem::http::problem
  std::string title{};   ///< a short summary that does not change between occurrences
  std::string detail{};  ///< what happened to this request, for a human
  /// Extension members, written as JSON strings after the standard ones.
  std::vector<std::pair<std::string, std::string>> extensions{};

  /// The JSON document, with `type` prefixed by `type_base` unless it already
  /// is an absolute URI (contains ':').
  std::string to_json(std::string_view type_base = {}) const;
};

/// invalid_request() is the Problem a validate hook returns for bad input:
/// 400, type invalid-request, and `detail` naming what is wrong.
Problem invalid_request(std::string detail);

/// write_problem() sets `response` to `problem` (status, Content-Type
/// application/problem+json, body). `type_base` as in Problem::to_json().
void write_problem(httplib::Response& response, const Problem& problem, std::string_view type_base = {});

// --- Parsing the header --------------------------------------------------------

/// parse_idempotency_key() reads the value of one Idempotency-Key field: an
/// RFC 8941 sf-string (`"abc"`, with \" and \\ escapes) or, for clients that
/// do not quote, the bare token (`abc`). Surrounding spaces and tabs are
/// ignored. The key must be 1..max_length visible ASCII characters (spaces
/// allowed inside). kInvalidArgument with a message a client can act on
/// otherwise. max_length 0 means no limit.
Result<std::string> parse_idempotency_key(std::string_view field_value, std::size_t max_length = 255);

// --- What is stored for a key ----------------------------------------------------

/// StoredResponse is the part of a response that is replayed.
struct StoredResponse {
  int status = 200;                                            ///< the HTTP status
  std::vector<std::pair<std::string, std::string>> headers{};  ///< in order, repeats kept
  std::string body{};                                          ///< exact bytes

  /// encode() writes compact JSON (the record's result). Strings that are not
  /// valid UTF-8, or contain NUL, are written as {"b64": "..."} so that any
  /// body survives every store, including those with text/JSON columns.
  std::string encode() const;
  /// decode() reads what encode() wrote; kCorrupt for anything else.
  static Result<StoredResponse> decode(std::string_view text);
};

// --- Fingerprints --------------------------------------------------------------

/// What makes two requests with one key "the same request" (see fingerprint()).
struct FingerprintOptions {
  /// Include the query string (parameters sorted, so their order does not
  /// matter).
  bool include_query = true;
  /// Request headers whose values are part of the fingerprint (such as a tenant
  /// or API version header). None by default: clients vary User-Agent,
  /// Date, tracing headers and so on between retries.
  std::vector<std::string> include_headers{};
  /// JSON bodies (Content-Type application/json or */*+json) are compared in a
  /// canonical form: keys sorted, no whitespace. These fields, given as JSON
  /// Pointers (RFC 6901, e.g. "/metadata/sent_at"), are removed first, so a
  /// client may change them between retries.
  std::vector<std::string> ignore_json_fields{};
  /// Replaces all of the above: returns the bytes that identify the request
  /// (hashed by the middleware; the method and path are still included).
  std::function<std::string(const httplib::Request&)> custom{};
};

/// fingerprint() is the hex SHA-256 of the method, path, query, selected
/// headers and canonical body, as configured. Throws ConfigurationError
/// (kInvalidConfiguration) when an ignore_json_fields entry is not a JSON
/// Pointer.
std::string fingerprint(const httplib::Request& request, const FingerprintOptions& options = {});

// --- The middleware --------------------------------------------------------------

/// Per-route settings of IdempotencyMiddleware::wrap() and Post()/Put()/...
struct RouteOptions {
  /// The route's name for metrics (`route` label), spans (http.route) and the
  /// record's event_type. Post()/Put()/... set "POST /pattern" when empty;
  /// wrap() uses "unnamed".
  std::string name{};
  /// A request without the header: 400 when true; when false the handler runs
  /// without idempotency protection.
  bool require_key = true;
  /// What binds a key to its first request (a different one gets 422).
  FingerprintOptions fingerprint{};
  /// Runs before anything is stored. Return a Problem to reject the request
  /// (bad JSON, invalid fields): it is answered at once and its key stays
  /// unused, so the client can fix the request and send it again with the
  /// same key. Return nullopt to go on.
  std::function<std::optional<Problem>(const httplib::Request&)> validate{};
};

/// Settings shared by every route of one IdempotencyMiddleware.
struct MiddlewareOptions {
  /// The request header that carries the key (matched case-insensitively).
  std::string header = "Idempotency-Key";
  /// Longest key accepted, in bytes (Stripe and most APIs use 255).
  std::size_t max_key_length = 255;
  /// The key scope in the store (see KeyOptions::scope): keys of HTTP clients
  /// do not collide with event ids of other entry points.
  std::string scope = "http";
  /// Separates the key spaces of different clients (an account or API-key
  /// id). Empty result: the shared space.
  std::function<std::string(const httplib::Request&)> key_namespace{};
  /// Response headers replayed besides Content-Type and Location.
  std::vector<std::string> replayed_headers{};
  /// Retry-After on 409 (key in use) and 503 (store unavailable), rounded up
  /// to whole seconds (at least 1).
  std::chrono::milliseconds retry_after{std::chrono::seconds(1)};
  /// A request that finds its key in progress waits up to this long for the
  /// original and replays its response; 409 if it has not finished by then.
  /// 0: answer 409 at once. At most kMaxInProgressWait (1 hour, limits.h).
  std::chrono::milliseconds wait_for_in_progress{0};
  /// Renew the lease while a slow handler runs (see ProcessorOptions).
  bool heartbeat = true;
  /// Prefix of the short problem types. A tag URI (RFC 4151): it identifies
  /// the problem without pretending to be a page (RFC 9457 §3.1.1). Set your
  /// own documentation URL here if you publish one.
  std::string problem_type_base = "tag:idem.dev,2025:problem:";
  /// A handler exception: false answers 500 handler-error (no exception text
  /// leaks to the client); true rethrows it to the server's exception handler.
  /// Either way the key is not stored.
  bool rethrow_handler_exceptions = false;
};

/// RequestOutcome says how the middleware answered one request.
enum class RequestOutcome : std::uint8_t {
  kExecuted,          ///< the handler ran and its response was stored
  kNotStored,         ///< the handler ran; 5xx or the store refused: key still usable
  kHandlerThrew,      ///< the handler threw: 500, key still usable
  kReplayed,          ///< a stored response was replayed
  kInProgress,        ///< 409: the first request is still running
  kMismatch,          ///< 422: key reused for another request
  kKeyMissing,        ///< 400
  kKeyInvalid,        ///< 400
  kRejected,          ///< the validate hook answered (400), nothing stored
  kStoreUnavailable,  ///< 503, handler not run
  kStoreError,        ///< 500: the store answered with an unexpected error
  kOriginalFailed,    ///< 500: the key holds a terminal failure
  kUnprotected,       ///< fail-open: the store was down and the handler ran anyway
  kPassThrough,       ///< no key on a route where it is optional
};
/// The number of RequestOutcome values.
inline constexpr std::size_t kRequestOutcomeCount = 14;
/// Stable lower-case names ("executed", "replayed", "in_progress", ...).
std::string_view to_string(RequestOutcome outcome) noexcept;

namespace detail {
struct MiddlewareState;
}  // namespace detail

/// IdempotencyMiddleware makes cpp-httplib handlers idempotent. Thread-safe;
/// the handlers it returns keep what they need alive, so the middleware object
/// may be destroyed before the server.
class IdempotencyMiddleware {
 public:
  /// Throws ConfigurationError (kInvalidConfiguration) for a null checker, a
  /// checker without validate_payload, or options out of range.
  explicit IdempotencyMiddleware(std::shared_ptr<IdempotencyChecker> checker, MiddlewareOptions options = {});
  /// Routes already registered keep working: they share the state.
  ~IdempotencyMiddleware();
  IdempotencyMiddleware(const IdempotencyMiddleware&) = delete;
  IdempotencyMiddleware& operator=(const IdempotencyMiddleware&) = delete;

  /// wrap() returns `handler` made idempotent, for any registration call.
  /// Throws ConfigurationError (kInvalidConfiguration) for an empty handler
  /// or a bad JSON Pointer in the route's fingerprint options.
  Handler wrap(Handler handler, RouteOptions route = {}) const;

  /// Registers `handler` on `server` for POST `pattern` (a cpp-httplib
  /// regex), wrapped; the route is named "POST pattern" unless `route.name`
  /// says otherwise. Returns *this to chain.
  IdempotencyMiddleware& Post(httplib::Server& server, const std::string& pattern, Handler handler,
                              RouteOptions route = {});
  /// Post() for PUT.
  IdempotencyMiddleware& Put(httplib::Server& server, const std::string& pattern, Handler handler,
                             RouteOptions route = {});
  /// Post() for PATCH.
  IdempotencyMiddleware& Patch(httplib::Server& server, const std::string& pattern, Handler handler,
                               RouteOptions route = {});
  /// Post() for DELETE.
  IdempotencyMiddleware& Delete(httplib::Server& server, const std::string& pattern, Handler handler,
                                RouteOptions route = {});

  /// How many requests ended with `outcome`, over all routes.
  std::uint64_t count(RequestOutcome outcome) const;
  /// How many requests to the route named `route` ended with `outcome`.
  std::uint64_t count(RequestOutcome outcome, std::string_view route) const;

  /// render_metrics() returns idem_http_requests_total{route,outcome} in the
  /// Prometheus text format, to append to MetricsRegistry::render().
  std::string render_metrics(std::string_view prefix = "idem_") const;

  /// The options given to the constructor.
  const MiddlewareOptions& options() const noexcept;
  /// The checker every route claims through.
  const std::shared_ptr<IdempotencyChecker>& checker() const noexcept;

 private:
  std::shared_ptr<detail::MiddlewareState> state_;
};

}  // namespace idem::http
