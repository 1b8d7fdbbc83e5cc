// The idempotent JetStream consumer: fetch, claim, run, settle. The rules
// for each message live in policy.cpp; this file moves messages between
// threads (see consumer_impl.h for who runs what).
#include <nats/nats.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <thread>

#include "idem/core/tracing.h"
#include "idem/integrations/nats.h"
#include "integrations/nats/connection_impl.h"
#include "integrations/nats/consumer_impl.h"
#include "integrations/nats/dead_letter.h"
#include "integrations/nats/handles.h"

namespace idem::nats {
namespace detail {
namespace {

using std::chrono::milliseconds;
using Clock = Timer::Clock;

std::int64_t to_nanos(milliseconds ms) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

Timestamp wall_now() { return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now()); }

// Uniform in [0, 1): the jitter of nak delays. One generator per thread.
double jitter() {
  thread_local std::minstd_rand engine(
      static_cast<std::minstd_rand::result_type>(std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
                                                 static_cast<std::size_t>(Clock::now().time_since_epoch().count())));
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
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

Headers read_headers(natsMsg* msg) {
  Headers out;
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK || keys == nullptr) return out;
  for (int i = 0; i < count; ++i) {
    const char** values = nullptr;
    int value_count = 0;
    if (natsMsgHeader_Values(msg, keys[i], &values, &value_count) != NATS_OK || values == nullptr) continue;
    for (int j = 0; j < value_count; ++j) out.emplace_back(keys[i], values[j] != nullptr ? values[j] : "");
    std::free(static_cast<void*>(values));  // the array is ours, the strings are the message's
  }
  std::free(static_cast<void*>(keys));
  return out;
}

Decision nak_now(MessageOutcome outcome, std::string detail) {
  Decision d;
  d.action = Decision::Action::kNak;
  d.outcome = outcome;
  d.detail = std::move(detail);
  return d;
}

}  // namespace

ConsumerImpl::ConsumerImpl(std::shared_ptr<Connection> conn, std::shared_ptr<IdempotencyChecker> check,
                           ConsumerOptions opts, Handler h)
    : connection(std::move(conn)), checker(std::move(check)), options(std::move(opts)), handler(std::move(h)) {
  classify = options.classify_failure ? options.classify_failure : FailureClassifier(default_failure_classifier);
  const milliseconds lease = checker->options().lease;
  heartbeat_interval =
      options.heartbeat_interval.count() > 0 ? options.heartbeat_interval : std::max(milliseconds(1), lease / 3);
  ack_wait = ack_wait_for_lease(lease);
  policy.lease = lease;
  policy.heartbeat = heartbeat_interval;
  policy.retry_backoff = options.retry_backoff;
  policy.retry_backoff_max = options.retry_backoff_max;
  policy.in_progress_delay = options.in_progress_delay;
  policy.in_progress_backoff = options.in_progress_backoff;
  policy.max_deliver = options.max_deliver;
  dead_letter_subject =
      options.dead_letter_subject.empty() ? default_dead_letter_subject(options.stream) : options.dead_letter_subject;
  native = checker->store().async_is_native();
  observer = checker->options().observer;
  if (options.max_in_flight == 0) options.max_in_flight = 4 * options.concurrency;
  if (options.fetch_batch == 0 || options.fetch_batch > options.max_in_flight) {
    options.fetch_batch = options.max_in_flight;
  }
}

ConsumerImpl::~ConsumerImpl() = default;

Status ConsumerImpl::bind() {
  jsCtx* js = connection->impl().js;
  jsConsumerInfo* raw = nullptr;
  jsErrCode js_code{};
  natsStatus s = js_GetConsumerInfo(&raw, js, options.stream.c_str(), options.durable.c_str(), nullptr, &js_code);
  ConsumerInfoPtr info(raw);
  const std::string what = "consumer '" + options.durable + "' of stream '" + options.stream + "'";
  if (s == NATS_NOT_FOUND || js_code == JSConsumerNotFoundErr) {
    if (!options.create_consumer) return Error(ErrorCode::kNotFound, "nats: " + what + " does not exist");
    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.Durable = options.durable.c_str();
    config.AckPolicy = js_AckExplicit;
    config.DeliverPolicy = js_DeliverAll;
    config.AckWait = to_nanos(ack_wait);
    // Redelivery is bounded by Idem (max_deliver counts handler attempts,
    // not in-progress naks), never by the server, which would drop a
    // message silently.
    config.MaxDeliver = -1;
    if (!options.filter_subject.empty()) config.FilterSubject = options.filter_subject.c_str();
    raw = nullptr;
    s = js_AddConsumer(&raw, js, options.stream.c_str(), &config, nullptr, &js_code);
    info.reset(raw);
    if (s != NATS_OK && js_code != JSConsumerNameExistErr && js_code != JSConsumerExistingActiveErr) {
      return nats_error(s, js_code, "cannot create " + what);
    }
    if (s != NATS_OK) {  // another worker created it first
      raw = nullptr;
      s = js_GetConsumerInfo(&raw, js, options.stream.c_str(), options.durable.c_str(), nullptr, &js_code);
      info.reset(raw);
    }
  }
  if (s != NATS_OK || !info || info->Config == nullptr) return nats_error(s, js_code, "info of " + what);

  const jsConsumerConfig& existing = *info->Config;
  if (existing.DeliverSubject != nullptr && *existing.DeliverSubject != '\0') {
    return Error(ErrorCode::kInvalidConfiguration, "nats: " + what + " is a push consumer; Idem needs a pull consumer");
  }
  const std::string existing_filter = existing.FilterSubject != nullptr ? existing.FilterSubject : "";
  if (!options.filter_subject.empty() && existing_filter != options.filter_subject) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "nats: " + what + " filters '" + existing_filter + "', not '" + options.filter_subject + "'");
  }
  policy.server_max_deliver = existing.MaxDeliver;
  if (options.create_consumer && existing.AckWait != to_nanos(ack_wait)) {
    // One clock: the AckWait must follow the lease, or crashed workers'
    // messages come back too early (bounced as in progress) or too late.
    jsConsumerConfig updated = existing;
    updated.AckWait = to_nanos(ack_wait);
    jsConsumerInfo* raw_updated = nullptr;
    s = js_UpdateConsumer(&raw_updated, js, options.stream.c_str(), &updated, nullptr, &js_code);
    ConsumerInfoPtr updated_info(raw_updated);
    if (s != NATS_OK) return nats_error(s, js_code, "cannot align the AckWait of " + what + " with the lease");
  }

  jsSubOptions sub_options;
  jsSubOptions_Init(&sub_options);
  sub_options.Stream = options.stream.c_str();
  sub_options.Consumer = options.durable.c_str();
  sub_options.ManualAck = true;
  natsSubscription* sub = nullptr;
  s = js_PullSubscribe(&sub, js, existing_filter.c_str(), options.durable.c_str(), nullptr, &sub_options, &js_code);
  if (s != NATS_OK) return nats_error(s, js_code, "cannot bind to " + what);
  subscription.reset(sub);
  return {};
}

void ConsumerImpl::start_threads() {
  pool = std::make_unique<WorkerPool>(options.concurrency);
  timer = std::make_unique<Timer>();
  running.store(true);
  fetcher = std::thread([this] { fetch_loop(); });
}

void ConsumerImpl::stop() {
  if (stopped.exchange(true)) return;
  running.store(false);
  flight_cv.notify_all();
  if (fetcher.joinable()) fetcher.join();
  {
    std::unique_lock lock(flight_mutex);
    flight_cv.wait_for(lock, options.drain_timeout, [this] { return live.empty(); });
  }
  // Whatever is still unsettled goes back to the server now, so another
  // worker can take it instead of waiting out the AckWait.
  std::vector<std::shared_ptr<Delivery>> leftovers;
  {
    std::lock_guard lock(flight_mutex);
    for (auto& [ptr, weak] : live) {
      if (auto d = weak.lock()) leftovers.push_back(std::move(d));
    }
  }
  for (const auto& d : leftovers) settle(d, nak_now(MessageOutcome::kAbandoned, "the consumer stopped"));
  leftovers.clear();
  if (timer) timer->stop();
  if (pool) pool->stop();
  subscription.reset();
}

void ConsumerImpl::store_call(std::function<void()> call) {
  if (native || pool->on_worker_thread()) {
    call();
    return;
  }
  (void)pool->post(std::move(call));  // refused only while stopping: stop() settles the delivery
}

// --- fetch -------------------------------------------------------------------

void ConsumerImpl::fetch_loop() {
  while (running.load()) {
    std::size_t room = 0;
    {
      std::unique_lock lock(flight_mutex);
      flight_cv.wait(lock, [this] { return !running.load() || live.size() < options.max_in_flight; });
      if (!running.load()) break;
      room = options.max_in_flight - live.size();
    }
    const int batch = static_cast<int>(std::min(room, options.fetch_batch));
    natsMsgList list{nullptr, 0};
    jsErrCode js_code{};
    const natsStatus s = natsSubscription_Fetch(&list, subscription.get(), batch, options.fetch_wait.count(), &js_code);
    std::vector<std::shared_ptr<Delivery>> deliveries;
    deliveries.reserve(static_cast<std::size_t>(std::max(list.Count, 0)));
    for (int i = 0; i < list.Count; ++i) {
      MsgPtr msg(list.Msgs[i]);
      list.Msgs[i] = nullptr;
      if (msg) deliveries.push_back(make_delivery(std::move(msg)));
    }
    natsMsgList_Destroy(&list);
    if (deliveries.empty()) {
      if (s != NATS_OK && s != NATS_TIMEOUT) {
        // Disconnected or the server is restarting: nats.c reconnects by
        // itself; pause briefly instead of spinning on errors.
        fetch_errors.fetch_add(1, std::memory_order_relaxed);
        std::unique_lock lock(flight_mutex);
        flight_cv.wait_for(lock, std::min(options.fetch_wait, milliseconds(250)), [this] { return !running.load(); });
      }
      continue;
    }
    fetched.fetch_add(deliveries.size(), std::memory_order_relaxed);
    if (!running.load()) {
      for (const auto& d : deliveries) settle(d, nak_now(MessageOutcome::kAbandoned, "the consumer stopped"));
      break;
    }
    process_batch(std::move(deliveries));
  }
}

std::shared_ptr<Delivery> ConsumerImpl::make_delivery(MsgPtr msg) {
  auto d = std::make_shared<Delivery>();
  d->consumer = shared_from_this();
  d->received = Clock::now();
  natsMsg* m = msg.get();
  if (const char* subject = natsMsg_GetSubject(m)) d->subject = subject;
  jsMsgMetaData* raw_meta = nullptr;
  if (natsMsg_GetMetaData(&raw_meta, m) == NATS_OK && raw_meta != nullptr) {
    MetaDataPtr meta(raw_meta);
    d->delivery = std::max<std::uint64_t>(meta->NumDelivered, 1);
    d->stream_sequence = meta->Sequence.Stream;
    if (meta->Stream != nullptr) d->stream = meta->Stream;
  }
  if (d->stream.empty()) d->stream = options.stream;
  // Read once here, before the message is shared: nats.c parses headers
  // lazily, which is not safe against acks from other threads.
  d->headers = read_headers(m);
  const char* data = natsMsg_GetData(m);
  const int length = natsMsg_GetDataLength(m);
  auto envelope = Envelope::parse(std::string_view(data != nullptr ? data : "", static_cast<std::size_t>(length)));
  if (envelope) {
    d->envelope = std::move(*envelope);
  } else {
    d->decode_error = envelope.error().message();
  }
  d->msg = std::move(msg);
  if (observer) {
    d->span = observer->start_span(trace::kSpanMessage);
    if (d->span) {
      d->span->set_attribute(idem::trace::kMessagingSystem, "nats");
      d->span->set_attribute(idem::trace::kMessagingOperation, "process");
      d->span->set_attribute(idem::trace::kMessagingDestination, d->subject);
      if (d->envelope) d->span->set_attribute(idem::trace::kMessagingMessageId, d->envelope->event_id);
      d->span->set_attribute(trace::kDelivery, static_cast<std::int64_t>(d->delivery));
      d->span->set_attribute(trace::kStreamSequence, static_cast<std::int64_t>(d->stream_sequence));
    }
  }
  {
    std::lock_guard lock(flight_mutex);
    live.emplace(d.get(), d);
  }
  in_flight.fetch_add(1, std::memory_order_relaxed);
  timer->repeat(heartbeat_interval,
                [this, weak = std::weak_ptr<Delivery>(d)]() -> std::optional<milliseconds> { return heartbeat(weak); });
  return d;
}

void ConsumerImpl::process_batch(std::vector<std::shared_ptr<Delivery>> batch) {
  auto claimable = std::make_shared<std::vector<std::shared_ptr<Delivery>>>();
  std::vector<Envelope> envelopes;
  for (auto& d : batch) {
    if (!d->envelope) {
      act(d, after_undecodable(d->decode_error));
      continue;
    }
    // claim_many fails the whole batch on one bad key: find those first.
    if (auto key = checker->key_for(*d->envelope); !key) {
      act(d, after_claim_error(policy, key.error(), d->delivery, jitter()));
      continue;
    }
    envelopes.push_back(*d->envelope);
    claimable->push_back(std::move(d));
  }
  if (claimable->empty()) return;
  // One round trip for the whole batch (a pipeline on Redis, one transaction
  // on SQLite). The envelopes need only live until the call returns.
  auto call = [this, claimable, envelopes = std::move(envelopes)] {
    checker->claim_many_async(envelopes, [this, claimable](Result<std::vector<Claim>> claims) {
      for (std::size_t i = 0; i < claimable->size(); ++i) {
        if (!claims) {
          on_claimed((*claimable)[i], claims.error());
        } else if (i < claims->size()) {
          on_claimed((*claimable)[i], std::move((*claims)[i]));
        } else {
          on_claimed((*claimable)[i], Error(ErrorCode::kInternal, "the store returned too few claims"));
        }
      }
    });
  };
  store_call(std::move(call));
}

// --- claim -------------------------------------------------------------------

void ConsumerImpl::on_claimed(const std::shared_ptr<Delivery>& d, Result<Claim> claim) {
  Decision decision;
  if (!claim) {
    decision = after_claim_error(policy, claim.error(), d->delivery, jitter());
  } else {
    decision = after_claim(policy, claim->outcome, d->delivery, wall_now(), jitter());
    d->key = std::move(claim->key);
    if (claim->outcome.acquired()) {
      d->claim = std::move(claim->outcome);
      d->leased.store(true, std::memory_order_release);
    }
  }
  act(d, last_delivery(policy, d->delivery, std::move(decision)));
}

void ConsumerImpl::act(const std::shared_ptr<Delivery>& d, Decision decision) {
  switch (decision.action) {
    case Decision::Action::kRunHandler:
      // Always queued, even on a pool thread (inline stores claim there):
      // the handlers of one claimed batch then run side by side.
      (void)pool->post([this, d] { run_handler(d); });
      return;
    case Decision::Action::kAck:
    case Decision::Action::kNak: settle(d, decision); return;
    case Decision::Action::kDeadLetter:
      if (decision.fail_record_first && d->claim.acquired()) {
        // Release the key (FAILED, retryable) so other copies are not held
        // back by our lease; they will reach the same verdict.
        const std::string key = d->key;
        const Token token = d->claim.token;
        const std::string detail = decision.detail;
        store_call([this, d, key, token, detail, decision = std::move(decision)]() mutable {
          checker->fail_async(key, token, detail, true, [this, d, decision = std::move(decision)](Status) mutable {
            d->leased.store(false, std::memory_order_release);
            dead_letter(d, std::move(decision));
          });
        });
        return;
      }
      dead_letter(d, std::move(decision));
      return;
  }
}

// --- handler -------------------------------------------------------------------

void ConsumerImpl::run_handler(const std::shared_ptr<Delivery>& d) {
  {
    std::lock_guard lock(d->mutex);
    if (d->settled) return;
    if (observer) {
      d->handler_span = observer->start_span(idem::trace::kSpanHandler);
      if (d->handler_span) {
        d->handler_span->set_attribute(idem::trace::kKey, d->key);
        d->handler_span->set_attribute(idem::trace::kToken, static_cast<std::int64_t>(d->claim.token));
        d->handler_span->set_attribute(idem::trace::kAttempt, static_cast<std::int64_t>(d->claim.attempt));
        d->handler_span->set_attribute(idem::trace::kMessagingMessageId, d->envelope->event_id);
      }
    }
  }
  d->handler_ran = true;
  d->handler_started = Clock::now();
  handler_runs.fetch_add(1, std::memory_order_relaxed);
  std::exception_ptr error;
  try {
    MessageContext context(*d);
    d->result = handler(context);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) {
    fail(d, classify(error), describe(error));
    return;
  }
  if (d->completed_by_handler) {
    on_completed(d, Status());
    return;
  }
  d->first_complete = Clock::now();
  complete(d);
}

void ConsumerImpl::complete(const std::shared_ptr<Delivery>& d) {
  ++d->complete_attempts;
  checker->complete_async(d->key, d->claim.token, d->result,
                          [this, d](Status status) { on_completed(d, std::move(status)); });
}

void ConsumerImpl::on_completed(const std::shared_ptr<Delivery>& d, Status status) {
  if (status) {
    d->leased.store(false, std::memory_order_release);
    report_handler(d, HandlerOutcome::kCompleted);
    Decision ack;
    ack.action = Decision::Action::kAck;
    ack.outcome = MessageOutcome::kAcked;
    settle(d, ack);
    return;
  }
  const Error& error = status.error();
  if (error.code() == ErrorCode::kLeaseLost && d->complete_attempts > 1) {
    // An earlier attempt may have landed and only its reply been lost: then
    // the record is COMPLETED under our own token, which is success.
    checker->get_async(d->key, [this, d, status](Result<std::optional<IdempotencyRecord>> record) mutable {
      const bool ours =
          record && *record && (*record)->token == d->claim.token && (*record)->status == ProcessingStatus::kCompleted;
      d->complete_attempts = 1;  // decide now, whatever the answer
      on_completed(d, ours ? Status() : std::move(status));
    });
    return;
  }
  if (error.retryable() && Clock::now() - d->first_complete < policy.lease) {
    // The handler ran: giving up now means running it again after the lease.
    // Retry while the lease could still be ours (heartbeats keep trying too).
    const milliseconds delay =
        std::min(milliseconds(50) * (1 << std::min(d->complete_attempts, 6U)), heartbeat_interval);
    timer->after(delay, [this, d] { store_call([this, d] { complete(d); }); });
    return;
  }
  if (error.code() == ErrorCode::kResultTooLarge) {
    // The checker refused the result and already marked the record FAILED
    // (retryable): a retryable handler failure, without a second write.
    d->leased.store(false, std::memory_order_release);
    on_failed(d, FailureKind::kRetryable, error.message(), Status());
    return;
  }
  d->leased.store(false, std::memory_order_release);
  report_handler(d, error.code() == ErrorCode::kLeaseLost ? HandlerOutcome::kLeaseLost : HandlerOutcome::kAbandoned);
  settle(d, last_delivery(policy, d->delivery, after_write_error(policy, error, d->delivery, jitter())));
}

void ConsumerImpl::fail(const std::shared_ptr<Delivery>& d, FailureKind kind, std::string detail) {
  d->leased.store(false, std::memory_order_release);
  auto shared_detail = std::make_shared<const std::string>(std::move(detail));
  checker->fail_async(d->key, d->claim.token, *shared_detail, kind == FailureKind::kRetryable,
                      [this, d, kind, shared_detail](Status status) { on_failed(d, kind, *shared_detail, status); });
}

void ConsumerImpl::on_failed(const std::shared_ptr<Delivery>& d, FailureKind kind, const std::string& detail,
                             Status status) {
  if (!status && status.error().code() == ErrorCode::kLeaseLost) {
    report_handler(d, HandlerOutcome::kLeaseLost);
    settle(d, last_delivery(policy, d->delivery, after_write_error(policy, status.error(), d->delivery, jitter())));
    return;
  }
  // A failure write that did not land leaves the record PROCESSING until its
  // lease runs out; the verdict on this message stands either way.
  report_handler(d,
                 kind == FailureKind::kTerminal ? HandlerOutcome::kFailedTerminal : HandlerOutcome::kFailedRetryable);
  Decision decision = after_handler_failure(policy, kind, d->claim.attempt, d->delivery, detail, jitter());
  act(d, last_delivery(policy, d->delivery, std::move(decision)));
}

void ConsumerImpl::report_handler(const std::shared_ptr<Delivery>& d, HandlerOutcome outcome) {
  if (!observer) return;
  const auto latency = d->handler_ran ? Clock::now() - d->handler_started : Clock::duration::zero();
  observer->on_handler(checker->options().key.scope, outcome, latency);
  std::lock_guard lock(d->mutex);
  if (d->handler_span) {
    idem::trace::annotate_handler(*d->handler_span, outcome);
    d->handler_span.reset();
  }
}

// --- dead letters -----------------------------------------------------------

void ConsumerImpl::dead_letter(const std::shared_ptr<Delivery>& d, Decision decision) {
  auto publish = [this, d, decision = std::move(decision)]() mutable {
    {
      std::lock_guard lock(d->mutex);
      if (d->settled) return;
    }
    DeadLetterInput input;
    input.reason = decision.reason.value_or(DeadLetterReason::kTerminal);
    input.detail = decision.detail;
    input.subject = d->subject;
    input.stream = d->stream;
    input.stream_sequence = d->stream_sequence;
    input.delivery = d->delivery;
    input.attempt = d->claim.acquired() ? d->claim.attempt : 0;
    input.key = d->key;
    if (d->envelope) input.event_id = d->envelope->event_id;
    input.original = &d->headers;
    const Headers headers = dead_letter_headers(input);
    const std::string msg_id = dead_letter_msg_id(input);

    std::string payload;
    {
      std::lock_guard lock(d->mutex);
      if (d->settled || !d->msg) return;
      const char* data = natsMsg_GetData(d->msg.get());
      payload.assign(data != nullptr ? data : "", static_cast<std::size_t>(natsMsg_GetDataLength(d->msg.get())));
    }
    Publisher publisher(connection, {.ack_timeout = options.dead_letter_timeout, .max_attempts = 1});
    auto receipt = publisher.publish_raw(dead_letter_subject, payload, msg_id, headers);
    if (receipt) {
      settle(d, decision);
      return;
    }
    Decision failed =
        nak_now(MessageOutcome::kDeadLetterFailed, "dead letter to '" + dead_letter_subject + "' failed (" +
                                                       receipt.error().to_string() + "); was: " + decision.detail);
    failed.reason = decision.reason;
    failed.delay = retry_delay(policy, d->delivery, jitter());
    settle(d, failed);
  };
  // The publish waits for a PubAck: never on a store I/O thread, and not in
  // the middle of settling a claimed batch either.
  (void)pool->post(std::move(publish));
}

// --- settlement and heartbeats -----------------------------------------------

void ConsumerImpl::settle(const std::shared_ptr<Delivery>& d, const Decision& decision) {
  {
    std::lock_guard lock(d->mutex);
    if (d->settled) return;
    d->settled = true;
    d->leased.store(false, std::memory_order_release);
    natsStatus s = NATS_OK;
    natsMsg* m = d->msg.get();
    switch (decision.outcome) {
      case MessageOutcome::kAcked:
      case MessageOutcome::kAckedDuplicate: s = natsMsg_Ack(m, nullptr); break;
      case MessageOutcome::kDeadLettered: s = natsMsg_Term(m, nullptr); break;
      case MessageOutcome::kNakInProgress:
      case MessageOutcome::kNakRetry:
      case MessageOutcome::kNakStoreError:
      case MessageOutcome::kNakLeaseLost:
      case MessageOutcome::kDeadLetterFailed:
      case MessageOutcome::kAbandoned:
        s = decision.delay.count() > 0 ? natsMsg_NakWithDelay(m, decision.delay.count(), nullptr)
                                       : natsMsg_Nak(m, nullptr);
        break;
    }
    // A refused ack is not lost work: the server redelivers after the
    // AckWait, and the redelivery settles as a duplicate.
    if (s != NATS_OK) ack_errors.fetch_add(1, std::memory_order_relaxed);
    d->msg.reset();
    if (d->span) {
      d->span->set_attribute(idem::trace::kOutcome, to_string(decision.outcome));
      if (decision.reason) d->span->set_attribute(trace::kDeadLetterReason, to_string(*decision.reason));
      if (decision.action == Decision::Action::kNak || decision.outcome == MessageOutcome::kDeadLetterFailed) {
        d->span->set_error(decision.detail);
      }
      d->span.reset();
    }
    d->handler_span.reset();
  }
  outcome_counts[static_cast<std::size_t>(decision.outcome)].fetch_add(1, std::memory_order_relaxed);
  if (decision.reason && decision.outcome == MessageOutcome::kDeadLettered) {
    dead_letter_counts[static_cast<std::size_t>(*decision.reason)].fetch_add(1, std::memory_order_relaxed);
  }
  if (options.on_message) {
    MessageReport report;
    report.outcome = decision.outcome;
    report.dead_letter_reason = decision.reason;
    report.subject = d->subject;
    if (d->envelope) report.event_id = d->envelope->event_id;
    report.key = d->key;
    report.detail = decision.detail;
    report.stream_sequence = d->stream_sequence;
    report.delivery = d->delivery;
    if (d->claim.acquired() && d->claim.token != 0) {
      report.attempt = d->claim.attempt;
      report.token = d->claim.token;
    }
    report.handler_ran = d->handler_ran;
    report.delay = decision.delay;
    report.latency = Clock::now() - d->received;
    try {
      options.on_message(report);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a reporting hook must not break settlement
    }
  }
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(flight_mutex);
    live.erase(d.get());
  }
  flight_cv.notify_all();
}

std::optional<milliseconds> ConsumerImpl::heartbeat(const std::weak_ptr<Delivery>& weak) {
  std::shared_ptr<Delivery> d = weak.lock();
  if (!d) return std::nullopt;
  {
    std::lock_guard lock(d->mutex);
    if (d->settled) return std::nullopt;
    if (!d->leased.load(std::memory_order_acquire) || d->lease_lost.load(std::memory_order_relaxed)) {
      // Not claimed yet (or no longer ours): keep the message from being
      // redelivered while it waits here.
      (void)natsMsg_InProgress(d->msg.get(), nullptr);
      return heartbeat_interval;
    }
  }
  // One clock: InProgress only once the store renewed the lease. If the
  // store is down, both run out together and the message comes back to a
  // worker that finds the lease expired. Inline stores run this call here,
  // on the timer thread, so a renewal never waits behind busy handlers.
  checker->extend_async(d->key, d->claim.token, [d](Status status) {
    std::lock_guard lock(d->mutex);
    if (d->settled) return;
    if (status) {
      (void)natsMsg_InProgress(d->msg.get(), nullptr);
    } else if (status.error().code() == ErrorCode::kLeaseLost) {
      d->lease_lost.store(true, std::memory_order_relaxed);
    }
  });
  return heartbeat_interval;
}

}  // namespace detail

// --- public API ----------------------------------------------------------------

std::string_view to_string(MessageOutcome outcome) noexcept {
  switch (outcome) {
    case MessageOutcome::kAcked: return "acked";
    case MessageOutcome::kAckedDuplicate: return "acked_duplicate";
    case MessageOutcome::kNakInProgress: return "nak_in_progress";
    case MessageOutcome::kNakRetry: return "nak_retry";
    case MessageOutcome::kNakStoreError: return "nak_store_error";
    case MessageOutcome::kNakLeaseLost: return "nak_lease_lost";
    case MessageOutcome::kDeadLettered: return "dead_lettered";
    case MessageOutcome::kDeadLetterFailed: return "dead_letter_failed";
    case MessageOutcome::kAbandoned: return "abandoned";
  }
  return "unknown";
}

std::string_view to_string(DeadLetterReason reason) noexcept {
  switch (reason) {
    case DeadLetterReason::kUndecodable: return "undecodable";
    case DeadLetterReason::kInvalidKey: return "invalid_key";
    case DeadLetterReason::kMismatch: return "mismatch";
    case DeadLetterReason::kTerminal: return "terminal";
    case DeadLetterReason::kMaxDeliver: return "max_deliver";
  }
  return "unknown";
}

std::uint64_t ConsumerStats::settled() const noexcept {
  std::uint64_t total = 0;
  for (std::uint64_t n : outcomes) total += n;
  return total;
}

std::chrono::milliseconds ack_wait_for_lease(std::chrono::milliseconds lease) noexcept {
  return lease + std::max(std::chrono::milliseconds(100), lease / 10);
}

std::string default_dead_letter_subject(std::string_view stream) { return "idem.dlq." + std::string(stream); }

Status ConsumerOptions::validate() const {
  auto invalid = [](const std::string& message) { return Error(ErrorCode::kInvalidConfiguration, "nats: " + message); };
  if (stream.empty()) return invalid("ConsumerOptions::stream is required");
  if (durable.empty()) return invalid("ConsumerOptions::durable is required");
  if (durable.find_first_of(". *>") != std::string::npos) {
    return invalid("durable name '" + durable + "' must not contain '.', ' ', '*' or '>'");
  }
  if (concurrency == 0) return invalid("concurrency must be at least 1");
  if (max_in_flight != 0 && max_in_flight < concurrency) return invalid("max_in_flight must be >= concurrency");
  if (fetch_wait.count() <= 0) return invalid("fetch_wait must be positive");
  if (retry_backoff.count() <= 0 || retry_backoff_max < retry_backoff) {
    return invalid("retry_backoff must be positive and at most retry_backoff_max");
  }
  if (in_progress_delay.count() < 0 || in_progress_backoff.count() < 0 || heartbeat_interval.count() < 0) {
    return invalid("in_progress_delay, in_progress_backoff and heartbeat_interval must not be negative");
  }
  if (dead_letter_timeout.count() <= 0) return invalid("dead_letter_timeout must be positive");
  if (drain_timeout.count() < 0) return invalid("drain_timeout must not be negative");
  return {};
}

Consumer::Consumer(std::shared_ptr<detail::ConsumerImpl> impl) : impl_(std::move(impl)) {}

Consumer::~Consumer() { stop(); }

void Consumer::stop() { impl_->stop(); }

std::chrono::milliseconds Consumer::ack_wait() const noexcept { return impl_->ack_wait; }
const ConsumerOptions& Consumer::options() const noexcept { return impl_->options; }

ConsumerStats Consumer::stats() const {
  ConsumerStats s;
  for (std::size_t i = 0; i < kMessageOutcomeCount; ++i) s.outcomes[i] = impl_->outcome_counts[i].load();
  for (std::size_t i = 0; i < kDeadLetterReasonCount; ++i) s.dead_letters[i] = impl_->dead_letter_counts[i].load();
  s.handler_runs = impl_->handler_runs.load();
  s.fetched = impl_->fetched.load();
  s.in_flight = impl_->in_flight.load();
  s.ack_errors = impl_->ack_errors.load();
  s.fetch_errors = impl_->fetch_errors.load();
  return s;
}

Result<std::unique_ptr<Consumer>> Consumer::start(std::shared_ptr<Connection> connection,
                                                  std::shared_ptr<IdempotencyChecker> checker, ConsumerOptions options,
                                                  Handler handler) {
  if (!connection) return Error(ErrorCode::kInvalidConfiguration, "nats: Consumer::start needs a connection");
  if (!checker) return Error(ErrorCode::kInvalidConfiguration, "nats: Consumer::start needs a checker");
  if (!handler) return Error(ErrorCode::kInvalidConfiguration, "nats: Consumer::start needs a handler");
  if (Status valid = options.validate(); !valid) return std::move(valid).error();
  auto impl = std::make_shared<detail::ConsumerImpl>(std::move(connection), std::move(checker), std::move(options),
                                                     std::move(handler));
  if (impl->heartbeat_interval >= impl->ack_wait) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "nats: heartbeat_interval must be shorter than the AckWait derived from the lease");
  }
  if (Status bound = impl->bind(); !bound) return std::move(bound).error();
  impl->start_threads();
  return std::unique_ptr<Consumer>(new Consumer(std::move(impl)));
}

// --- MessageContext -----------------------------------------------------------

const Envelope& MessageContext::envelope() const noexcept { return *delivery_.envelope; }
std::string_view MessageContext::subject() const noexcept { return delivery_.subject; }
const Headers& MessageContext::headers() const noexcept { return delivery_.headers; }
std::string_view MessageContext::key() const noexcept { return delivery_.key; }
Token MessageContext::token() const noexcept { return delivery_.claim.token; }
std::uint32_t MessageContext::attempt() const noexcept { return delivery_.claim.attempt; }
bool MessageContext::is_takeover() const noexcept { return delivery_.claim.acquire_kind == AcquireKind::kTakeover; }
std::uint64_t MessageContext::delivery() const noexcept { return delivery_.delivery; }
std::uint64_t MessageContext::stream_sequence() const noexcept { return delivery_.stream_sequence; }
const std::optional<Checkpoint>& MessageContext::last_checkpoint() const noexcept { return delivery_.claim.checkpoint; }
bool MessageContext::lease_lost() const noexcept { return delivery_.lease_lost.load(std::memory_order_relaxed); }
void MessageContext::set_completed_by_handler() noexcept { delivery_.completed_by_handler = true; }

void MessageContext::checkpoint(std::string_view name, std::string_view data) {
  delivery_.consumer->checker
      ->checkpoint(delivery_.key, delivery_.claim.token, Checkpoint{std::string(name), std::string(data)})
      .value();
}

}  // namespace idem::nats
