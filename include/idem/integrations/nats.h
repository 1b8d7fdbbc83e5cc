/// @file idem/integrations/nats.h
/// @brief NATS JetStream integration (component idem::nats, built on nats.c): an
/// idempotent pull consumer with dead letters, and a publisher that lets the
/// server drop duplicates on publish.
///
/// @code
/// auto conn = idem::nats::Connection::connect({.url = "nats://127.0.0.1:4222"}).value();
/// idem::nats::ensure_stream(*conn, {.name = "ORDERS", .subjects = {"orders.>"}}).value();
/// auto checker = idem::IdempotencyChecker::from_url("redis://127.0.0.1:6379/0", {.lease = 30s}).value();
/// auto consumer = idem::nats::Consumer::start(
///     conn, checker, {.stream = "ORDERS", .durable = "billing"},
///     [](idem::nats::MessageContext& ctx) { return charge(ctx.envelope(), ctx.token()); }).value();
/// ...
/// consumer->stop();  // drains in-flight messages
/// @endcode
///
/// What happens to each message (the consumer's whole contract):
///
/// @verbatim
///   envelope does not parse, or its key is invalid      term + dead letter
///   new key (or a takeover, or a retry): handler runs,
///     result stored                                     ack
///     handler threw a retryable error                   nak, delay growing with the delivery count
///     ... on attempt >= max_deliver                     term + dead letter (reason max_deliver)
///     handler threw a TerminalError                     term + dead letter
///     a newer owner took the key over (lease lost)      nak (the newer owner decides)
///   duplicate of a completed key                        ack, handler not run
///   duplicate of a key still in progress elsewhere      nak with delay, NEVER ack: if that worker
///                                                       dies, this copy is how the event survives
///   duplicate of a terminally failed key                term + dead letter (deduplicated per key)
///   key reused with another payload (mismatch)          term + dead letter
///   store unreachable or slow                           nak with backoff; handler not run (fail closed)
/// @endverbatim
///
/// One clock for leases and redelivery: while a message is in flight, every
/// heartbeat (lease / 3 by default) renews the Idem lease and, once the store
/// confirmed the renewal, sends JetStream `InProgress` for the message. The
/// durable consumer's AckWait is derived from the lease (ack_wait_for_lease()),
/// so a worker that dies is redelivered just after its lease ran out, and the
/// redelivery takes the key over at once.
///
/// Threads (see Consumer for the details): one fetch thread per consumer, a
/// small pool of handler threads, one heartbeat/timer thread, and, for stores
/// with native asynchronous I/O (Redis, PostgreSQL), the store's own I/O
/// threads, on which claims and completions settle without blocking a thread
/// per message. Stores that complete inline (memory, SQLite) are called from
/// the handler pool instead. docs/nats.md is the guide.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "idem/core/checker.h"
#include "idem/core/envelope.h"
#include "idem/core/error.h"
#include "idem/core/processor.h"
#include "idem/core/record.h"

namespace idem::nats {

namespace detail {
struct ConnectionImpl;
struct ConsumerImpl;
struct Delivery;
}  // namespace detail

/// Message headers, in order; a name may repeat.
using Headers = std::vector<std::pair<std::string, std::string>>;

/// Header names Idem writes on dead letters. The original message's own
/// headers are copied too; those starting with "Nats-" (which steer the
/// server, e.g. Nats-Msg-Id) are renamed "Idem-Original-Nats-...".
namespace header {
inline constexpr std::string_view kMsgId = "Nats-Msg-Id";                        ///< JetStream's de-duplication id
inline constexpr std::string_view kReason = "Idem-Dead-Letter-Reason";           ///< see to_string(DeadLetterReason)
inline constexpr std::string_view kError = "Idem-Dead-Letter-Error";             ///< one line, at most 1 KiB
inline constexpr std::string_view kOriginalSubject = "Idem-Original-Subject";    ///< where the message was published
inline constexpr std::string_view kOriginalStream = "Idem-Original-Stream";      ///< the stream it was read from
inline constexpr std::string_view kOriginalSequence = "Idem-Original-Sequence";  ///< its stream sequence
inline constexpr std::string_view kDeliveryCount = "Idem-Delivery-Count";        ///< JetStream's delivery count
inline constexpr std::string_view kAttempt = "Idem-Attempt";   ///< Idem's attempt counter, when a claim was made
inline constexpr std::string_view kKey = "Idem-Key";           ///< the full store key, when known
inline constexpr std::string_view kEventId = "Idem-Event-Id";  ///< the envelope's event_id, when it parsed

/// The prefix given to the original's "Nats-" headers.
inline constexpr std::string_view kRenamedPrefix = "Idem-Original-";
}  // namespace header

/// Span and attribute names of the per-message span (the checker adds its
/// own "idem.claim", and the consumer "idem.handler").
namespace trace {
/// One span per message, from fetch to settlement.
inline constexpr std::string_view kSpanMessage = "idem.nats.message";
inline constexpr std::string_view kDelivery = "idem.nats.delivery";               ///< int: JetStream delivery count
inline constexpr std::string_view kStreamSequence = "idem.nats.stream_sequence";  ///< int

/// The DeadLetterReason of a dead-lettered message.
inline constexpr std::string_view kDeadLetterReason = "idem.dead_letter.reason";
}  // namespace trace

// --- Connection -----------------------------------------------------------------

/// ConnectionEvent is what ConnectionOptions::on_event hears.
enum class ConnectionEvent : std::uint8_t {
  kDisconnected,  ///< the connection dropped; nats.c is reconnecting
  kReconnected,   ///< back; subscriptions were re-sent
  kClosed,        ///< closed for good (max_reconnect reached, or the Connection destroyed)
  kError,         ///< an asynchronous error (slow consumer, permissions...)
};
/// to_string() names an event: "disconnected", "reconnected", "closed", "error".
std::string_view to_string(ConnectionEvent event) noexcept;

/// ConnectionOptions configure Connection::connect().
struct ConnectionOptions {
  /// Server URL; a comma-separated list is accepted ("nats://a:4222,nats://b:4222").
  std::string url = "nats://127.0.0.1:4222";
  std::string name = "idem";                         ///< client name shown by the server
  std::chrono::milliseconds connect_timeout{2'000};  ///< per connection attempt
  std::chrono::milliseconds reconnect_wait{250};     ///< pause between reconnection attempts
  int max_reconnect = -1;                            ///< -1: reconnect forever

  /// How long JetStream management requests (stream and consumer info/add)
  /// wait for an answer.
  std::chrono::milliseconds api_timeout{5'000};
  /// Connection events, called on a nats.c thread; must return quickly.
  std::function<void(ConnectionEvent event, std::string_view detail)> on_event{};

  /// validate() returns kInvalidConfiguration when an option is out of range.
  Status validate() const;
};

/// Connection is one NATS connection with its JetStream context, shared by
/// consumers and publishers (thread-safe). It reconnects by itself.
class Connection {
 public:
  /// connect() connects: kUnavailable when no server answers within
  /// connect_timeout, kInvalidConfiguration for bad options or credentials.
  static Result<std::shared_ptr<Connection>> connect(ConnectionOptions options);
  /// Closes the connection (waits for nats.c's close callback).
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// connected() is true while the connection is up (not reconnecting).
  bool connected() const noexcept;
  /// reconnects() counts how many times the connection came back after a drop.
  std::uint64_t reconnects() const noexcept;
  /// options() are the options it was opened with.
  const ConnectionOptions& options() const noexcept;

  /// impl() is the nats.c side, for Idem's own sources (src/integrations/nats).
  detail::ConnectionImpl& impl() const noexcept { return *impl_; }

 private:
  explicit Connection(std::unique_ptr<detail::ConnectionImpl> impl);
  std::unique_ptr<detail::ConnectionImpl> impl_;
};

/// StreamSettings describe a stream for ensure_stream().
struct StreamSettings {
  std::string name{};                   ///< the stream name
  std::vector<std::string> subjects{};  ///< the subjects it captures, such as {"orders.>"}

  /// Nats-Msg-Id de-duplication window: the server drops a message whose id
  /// it saw within this window (see Publisher).
  std::chrono::milliseconds duplicate_window{120'000};
  std::chrono::milliseconds max_age{0};  ///< 0: keep messages until other limits apply
  bool memory_storage = false;           ///< default: file storage (survives a server restart)
};

/// ensure_stream() creates the stream when it does not exist. An existing
/// stream is left as it is (several workers may race to create it).
Status ensure_stream(Connection& connection, const StreamSettings& settings);

// --- Per-message outcomes -------------------------------------------------------

/// MessageOutcome is how the consumer settled one delivery of a message.
enum class MessageOutcome : std::uint8_t {
  kAcked,             ///< the handler ran and its result is stored
  kAckedDuplicate,    ///< the key was completed before: acked, handler not run
  kNakInProgress,     ///< another worker holds the key: redelivered after a delay
  kNakRetry,          ///< the handler failed (retryable): redelivered with backoff
  kNakStoreError,     ///< the store failed (outage, timeout, configuration): redelivered with backoff
  kNakLeaseLost,      ///< a newer owner took the key over; this result was not stored
  kDeadLettered,      ///< published to the dead-letter subject, then terminated
  kDeadLetterFailed,  ///< the dead-letter publish failed: nak'd, tried again later
  kAbandoned,         ///< still unsettled when stop() gave up waiting: nak'd
};
/// The number of MessageOutcome values (the size of ConsumerStats::outcomes).
inline constexpr std::size_t kMessageOutcomeCount = 9;
/// to_string() names an outcome: "acked", "acked_duplicate",
/// "nak_in_progress", "nak_retry", "nak_store_error", "nak_lease_lost",
/// "dead_lettered", "dead_letter_failed", "abandoned".
std::string_view to_string(MessageOutcome outcome) noexcept;

/// DeadLetterReason is why a message was dead-lettered.
enum class DeadLetterReason : std::uint8_t {
  kUndecodable,  ///< the payload is not a valid envelope
  kInvalidKey,   ///< the envelope's idempotency key is empty, too long or malformed
  kMismatch,     ///< the key was already used with a different payload
  kTerminal,     ///< the handler failed terminally (now, or earlier: replayed)
  kMaxDeliver,   ///< the handler failed on its max_deliver-th attempt
};
/// The number of DeadLetterReason values (the size of ConsumerStats::dead_letters).
inline constexpr std::size_t kDeadLetterReasonCount = 5;
/// to_string() names a reason: "undecodable", "invalid_key", "mismatch",
/// "terminal", "max_deliver".
std::string_view to_string(DeadLetterReason reason) noexcept;

/// MessageReport describes one settled message (ConsumerOptions::on_message).
/// The views are valid only during the call.
struct MessageReport {
  MessageOutcome outcome = MessageOutcome::kAcked;       ///< how it was settled
  std::optional<DeadLetterReason> dead_letter_reason{};  ///< for kDeadLettered / kDeadLetterFailed
  std::string_view subject{};                            ///< the subject it was published to
  std::string_view event_id{};                           ///< empty when undecodable
  std::string_view key{};                                ///< the full store key; empty when unknown
  std::string_view detail{};                             ///< the error behind a nak or dead letter
  std::uint64_t stream_sequence = 0;                     ///< its sequence in the stream
  std::uint64_t delivery = 0;                            ///< JetStream delivery count (1 on first delivery)
  std::uint32_t attempt = 0;                             ///< Idem's attempt counter when this delivery claimed the key
  Token token = 0;                                       ///< when this delivery claimed the key
  bool handler_ran = false;                              ///< the handler ran for this delivery
  std::chrono::milliseconds delay{};                     ///< nak delay
  std::chrono::nanoseconds latency{};                    ///< from fetch to settlement
};

/// ConsumerStats are a consumer's counters since it started.
struct ConsumerStats {
  std::uint64_t outcomes[kMessageOutcomeCount] = {};        ///< settlements, by MessageOutcome
  std::uint64_t dead_letters[kDeadLetterReasonCount] = {};  ///< dead letters, by DeadLetterReason
  std::uint64_t handler_runs = 0;                           ///< handler executions
  std::uint64_t fetched = 0;                                ///< messages received from pull requests
  std::uint64_t in_flight = 0;                              ///< fetched, not yet settled
  std::uint64_t ack_errors = 0;    ///< ack/nak/term calls nats.c refused (the server redelivers)
  std::uint64_t fetch_errors = 0;  ///< pull requests that failed (disconnects, restarts)

  /// count() is outcomes[outcome].
  std::uint64_t count(MessageOutcome outcome) const noexcept { return outcomes[static_cast<std::size_t>(outcome)]; }
  /// settled() counts every settlement (acks, naks and terms): a message
  /// nak'd twice and then acked counts three times.
  std::uint64_t settled() const noexcept;
};

// --- The handler ------------------------------------------------------------------

/// MessageContext is what the handler sees of one message it owns. Valid
/// only during the handler call.
class MessageContext {
 public:
  /// envelope() is the decoded message.
  const Envelope& envelope() const noexcept;
  /// subject() is the subject it was published to.
  std::string_view subject() const noexcept;
  /// headers() are the message's headers as received.
  const Headers& headers() const noexcept;
  /// key() is the full store key.
  std::string_view key() const noexcept;
  /// token() is the fencing token: pass it to downstream systems that reject
  /// stale writers.
  Token token() const noexcept;
  /// attempt() is 1 on the first run of this key, higher after retries and takeovers.
  std::uint32_t attempt() const noexcept;
  /// is_takeover() is true when a previous owner died mid-handler.
  bool is_takeover() const noexcept;
  /// delivery() is JetStream's delivery count of this message.
  std::uint64_t delivery() const noexcept;
  /// stream_sequence() is the message's sequence in its stream.
  std::uint64_t stream_sequence() const noexcept;
  /// last_checkpoint() is the previous owner's last checkpoint (takeover or retry).
  const std::optional<Checkpoint>& last_checkpoint() const noexcept;
  /// checkpoint() records a recovery point under this worker's token (one
  /// store call; throws LeaseLostError / StoreUnavailableError).
  void checkpoint(std::string_view name, std::string_view data);
  /// lease_lost() turns true once a heartbeat found that a newer owner took
  /// the key over: the result will not be stored, so a long handler may stop
  /// early.
  bool lease_lost() const noexcept;
  /// set_completed_by_handler() is for handlers that complete the record
  /// themselves, in their own transaction (the PostgreSQL store's
  /// transactional completion): the consumer then acks without writing the
  /// result again.
  void set_completed_by_handler() noexcept;

  /// Made by the consumer for each handler call.
  explicit MessageContext(detail::Delivery& delivery) noexcept : delivery_(delivery) {}

 private:
  detail::Delivery& delivery_;
};

/// Handler returns the result to store (usually JSON; "" is fine). Throw a
/// TerminalError (or whatever ConsumerOptions::classify_failure calls
/// terminal) to dead-letter the message; any other exception is retried.
using Handler = std::function<std::string(MessageContext& context)>;

// --- The consumer -----------------------------------------------------------------

/// ConsumerOptions configure Consumer::start().
struct ConsumerOptions {
  std::string stream{};          ///< required: the stream to consume
  std::string durable{};         ///< required: the durable consumer, shared by all workers
  std::string filter_subject{};  ///< empty: every subject of the stream

  /// Create the durable consumer when absent (explicit ack, unlimited server
  /// redeliveries, AckWait from the lease) and align an existing one's
  /// AckWait with the lease.
  bool create_consumer = true;

  std::size_t concurrency = 4;                ///< handler threads
  std::size_t max_in_flight = 0;              ///< messages fetched but not settled; 0: 4 x concurrency
  std::size_t fetch_batch = 0;                ///< messages per pull request; 0: max_in_flight
  std::chrono::milliseconds fetch_wait{500};  ///< how long one pull request waits for messages

  /// Handler attempts per key (Idem's attempt counter, which takeovers and
  /// retries raise and in-progress naks do not) before the message is dead
  /// lettered. 0: retry forever.
  std::uint32_t max_deliver = 5;
  /// Nak delay after a failure: retry_backoff x 2^(delivery-1), at most
  /// retry_backoff_max, with up to 20% jitter.
  std::chrono::milliseconds retry_backoff{250};
  std::chrono::milliseconds retry_backoff_max{30'000};  ///< the cap of retry_backoff's doubling

  /// Nak delay for a duplicate that finds its key in progress. 0 (auto):
  /// in_progress_backoff x 2^(delivery-1), but never past the owner's lease
  /// end (plus a margin: a dead owner is taken over at once), at most one
  /// heartbeat interval, at least 50 ms. Short first delays matter: a nak'd
  /// message counts against the consumer's MaxAckPending until it returns.
  std::chrono::milliseconds in_progress_delay{0};
  std::chrono::milliseconds in_progress_backoff{100};  ///< the first automatic in-progress delay

  /// How often leases are renewed and InProgress sent. 0: lease / 3.
  std::chrono::milliseconds heartbeat_interval{0};

  /// Where dead letters go. Empty: "idem.dlq.<stream>". It must be captured
  /// by a stream of its own (not by `stream`), so that the publish is
  /// acknowledged; the message is terminated only after that.
  std::string dead_letter_subject{};
  std::chrono::milliseconds dead_letter_timeout{5'000};  ///< PubAck wait per dead letter

  /// How long stop() waits for in-flight messages before nak'ing them.
  std::chrono::milliseconds drain_timeout{30'000};

  FailureClassifier classify_failure{};  ///< empty: default_failure_classifier

  /// on_message is called once per settled message, on the thread that
  /// settled it (a handler thread, the fetch thread or a store I/O thread):
  /// return quickly.
  std::function<void(const MessageReport&)> on_message{};

  /// validate() returns kInvalidConfiguration when an option is missing or
  /// out of range.
  Status validate() const;
};

/// ack_wait_for_lease() is the AckWait a durable consumer gets for a lease:
/// a little longer than the lease (lease + lease/10, at least +100 ms), so a
/// crashed worker's message comes back once its lease has run out.
std::chrono::milliseconds ack_wait_for_lease(std::chrono::milliseconds lease) noexcept;

/// default_dead_letter_subject() is "idem.dlq.<stream>".
std::string default_dead_letter_subject(std::string_view stream);

/// Consumer pulls from a durable JetStream consumer and runs each message's
/// handler through Idem (see the file comment for the per-message contract).
///
/// Threads:
///  * the fetch thread pulls batches (at most max_in_flight messages
///    unsettled), decodes them and claims each batch in one store round trip
///    (claim_many_async): on this thread for native asynchronous stores, on a
///    handler thread for inline ones;
///  * handler threads (`concurrency`) run the handler, and, for inline
///    stores, every store call; dead-letter publishes (they wait for a PubAck);
///  * store I/O threads (native stores only) settle claims and completions:
///    duplicates are acked or nak'd there, without a thread waiting;
///  * the heartbeat thread renews leases (inline stores: the call runs on it,
///    so heartbeats never wait behind busy handlers), sends InProgress, and
///    fires delayed retries of completions.
class Consumer {
 public:
  /// start() validates options, binds to (and, with create_consumer,
  /// creates) the durable consumer, and starts the threads.
  static Result<std::unique_ptr<Consumer>> start(std::shared_ptr<Connection> connection,
                                                 std::shared_ptr<IdempotencyChecker> checker, ConsumerOptions options,
                                                 Handler handler);
  /// Calls stop().
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  /// stop() stops fetching, waits up to drain_timeout for in-flight
  /// messages to settle, naks the rest (kAbandoned), then joins the threads
  /// (a handler still running is waited for). Idempotent.
  void stop();

  /// stats() are the counters so far.
  ConsumerStats stats() const;
  /// ack_wait() is the AckWait the consumer uses (derived from the checker's lease).
  std::chrono::milliseconds ack_wait() const noexcept;
  /// options() are the options it runs with (defaults filled in).
  const ConsumerOptions& options() const noexcept;

  /// render_metrics() returns Prometheus text (format 0.0.4) for this
  /// consumer, to append to MetricsRegistry::render() on the same page:
  /// `nats_messages_total{stream,consumer,outcome}`,
  /// `nats_dead_letters_total{stream,consumer,reason}`,
  /// `nats_handler_runs_total`, `nats_fetched_total`, `nats_in_flight`
  /// (gauge), `nats_ack_errors_total`, `nats_fetch_errors_total` and
  /// `nats_reconnects_total`, each after `prefix`.
  std::string render_metrics(std::string_view prefix = "idem_") const;

 private:
  explicit Consumer(std::shared_ptr<detail::ConsumerImpl> impl);
  std::shared_ptr<detail::ConsumerImpl> impl_;
};

// --- The publisher ------------------------------------------------------------------

/// PublishOptions configure a Publisher.
struct PublishOptions {
  std::chrono::milliseconds ack_timeout{2'000};  ///< PubAck wait per attempt

  /// Attempts per message on timeouts and connection errors (a retried
  /// message with a Nats-Msg-Id is dropped by the server if the first one
  /// landed).
  std::uint32_t max_attempts = 5;
  std::chrono::milliseconds retry_backoff{100};  ///< doubles per attempt, at most 2 s
  std::string expect_stream{};                   ///< fail unless this stream stores the message

  /// The Nats-Msg-Id of publish(envelope). Empty: Envelope::effective_key().
  KeyExtractor msg_id{};
};

/// PublishReceipt is the server's PubAck.
struct PublishReceipt {
  std::string stream{};        ///< the stream that stored the message
  std::uint64_t sequence = 0;  ///< its sequence there
  bool duplicate = false;      ///< the server had this Nats-Msg-Id already: not stored again
  std::uint32_t attempts = 0;  ///< how many attempts it took
};

/// Publisher publishes to JetStream and waits for the PubAck. Thread-safe.
class Publisher {
 public:
  /// Throws ConfigurationError when `connection` is null.
  explicit Publisher(std::shared_ptr<Connection> connection, PublishOptions options = {});

  /// publish() sends the envelope as JSON with Nats-Msg-Id set to its
  /// idempotency key, so the stream stores it once per duplicate window.
  Result<PublishReceipt> publish(std::string_view subject, const Envelope& envelope) const;

  /// publish_raw() sends bytes as they are; an empty msg_id sets no
  /// Nats-Msg-Id (the consumer side then deduplicates).
  Result<PublishReceipt> publish_raw(std::string_view subject, std::string_view data, std::string_view msg_id = {},
                                     const Headers& headers = {}) const;

 private:
  std::shared_ptr<Connection> connection_;
  PublishOptions options_;
};

}  // namespace idem::nats
