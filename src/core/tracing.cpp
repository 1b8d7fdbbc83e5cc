// Tracing attribute helpers, TracingObserver, LoggingObserver and
// CompositeObserver.
#include "idem/core/tracing.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <utility>

namespace idem {
namespace {

// LogLine builds one logfmt or JSON line.
class LogLine {
 public:
  LogLine(LogFormat format, bool timestamp, LogLevel level, std::string_view msg) : format_(format) {
    if (format_ == LogFormat::kJson) out_ += '{';
    if (timestamp) add("ts", now_rfc3339());
    add("level", to_string(level));
    add("msg", msg);
  }

  LogLine& add(std::string_view key, std::string_view value) {
    separator();
    if (format_ == LogFormat::kJson) {
      json_string(key);
      out_ += ':';
      json_string(value);
    } else {
      out_ += key;
      out_ += '=';
      logfmt_value(value);
    }
    return *this;
  }

  LogLine& add(std::string_view key, std::int64_t value) {
    separator();
    if (format_ == LogFormat::kJson) {
      json_string(key);
      out_ += ':';
    } else {
      out_ += key;
      out_ += '=';
    }
    out_ += std::to_string(value);
    return *this;
  }

  std::string finish() {
    if (format_ == LogFormat::kJson) out_ += '}';
    return std::move(out_);
  }

 private:
  static std::string now_rfc3339() {
    return format_rfc3339(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
  }

  void separator() {
    if (first_) {
      first_ = false;
      return;
    }
    out_ += format_ == LogFormat::kJson ? ',' : ' ';
  }

  void json_string(std::string_view text) {
    out_ += '"';
    for (char c : text) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            std::array<char, 8> escaped{};
            std::snprintf(escaped.data(), escaped.size(), "\\u%04x", static_cast<unsigned>(c));
            out_ += escaped.data();
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  void logfmt_value(std::string_view text) {
    bool quote = text.empty();
    for (char c : text) {
      if (c == ' ' || c == '=' || c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) quote = true;
    }
    if (!quote) {
      out_ += text;
      return;
    }
    // JSON string escaping is what logfmt parsers accept inside quotes.
    json_string(text);
  }

  LogFormat format_;
  bool first_ = true;
  std::string out_;
};

void default_sink(LogLevel /*level*/, std::string_view line) {
  // One fwrite per line under a lock: concurrent lines never interleave.
  static std::mutex mutex;
  std::string buffer(line);
  buffer += '\n';
  std::lock_guard lock(mutex);
  std::fwrite(buffer.data(), 1, buffer.size(), stderr);
}

// A span that the logging observer prints when it ends.
class LoggingSpan final : public SpanScope {
 public:
  LoggingSpan(const LoggingOptions& options, std::string_view name)
      : options_(options),
        line_(options.format, options.timestamps, LogLevel::kDebug, "idem span"),
        start_(std::chrono::steady_clock::now()) {
    line_.add("span", name);
  }
  ~LoggingSpan() override {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    line_.add("duration_us",
              static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
    if (!error_.empty()) line_.add("error", error_);
    const std::string text = line_.finish();
    if (options_.sink) {
      options_.sink(LogLevel::kDebug, text);
    } else {
      default_sink(LogLevel::kDebug, text);
    }
  }
  LoggingSpan(const LoggingSpan&) = delete;
  LoggingSpan& operator=(const LoggingSpan&) = delete;

  void set_attribute(std::string_view name, std::string_view value) override {
    if (!options_.include_keys && name == trace::kKey) return;
    line_.add(name, value);
  }
  void set_attribute(std::string_view name, std::int64_t value) override { line_.add(name, value); }
  void set_error(std::string_view message) override { error_ = message; }

 private:
  LoggingOptions options_;  // a copy: the span may outlive its observer
  LogLine line_;
  std::chrono::steady_clock::time_point start_;
  std::string error_;
};

class CompositeSpan final : public SpanScope {
 public:
  explicit CompositeSpan(std::vector<std::unique_ptr<SpanScope>> spans) : spans_(std::move(spans)) {}
  ~CompositeSpan() override {
    // End in reverse order of opening, as nested scopes would.
    while (!spans_.empty()) spans_.pop_back();
  }
  CompositeSpan(const CompositeSpan&) = delete;
  CompositeSpan& operator=(const CompositeSpan&) = delete;
  void set_attribute(std::string_view name, std::string_view value) override {
    for (auto& span : spans_) span->set_attribute(name, value);
  }
  void set_attribute(std::string_view name, std::int64_t value) override {
    for (auto& span : spans_) span->set_attribute(name, value);
  }
  void set_error(std::string_view message) override {
    for (auto& span : spans_) span->set_error(message);
  }

 private:
  std::vector<std::unique_ptr<SpanScope>> spans_;
};

LogLevel claim_level(const ClaimOutcome* outcome) noexcept {
  if (outcome == nullptr) return LogLevel::kWarn;
  switch (outcome->status) {
    case ClaimStatus::kAcquired: return outcome->acquire_kind == AcquireKind::kNew ? LogLevel::kDebug : LogLevel::kInfo;
    case ClaimStatus::kCompleted: return LogLevel::kDebug;
    case ClaimStatus::kInProgress:
    case ClaimStatus::kFailed: return LogLevel::kInfo;
    case ClaimStatus::kMismatch: return LogLevel::kWarn;
  }
  return LogLevel::kWarn;
}

LogLevel handler_level(HandlerOutcome outcome) noexcept {
  return outcome == HandlerOutcome::kCompleted ? LogLevel::kDebug : LogLevel::kWarn;
}

}  // namespace

namespace trace {

std::string_view outcome_name(const ClaimOutcome* outcome) noexcept {
  if (outcome == nullptr) return "store_error";
  switch (outcome->status) {
    case ClaimStatus::kAcquired:
      switch (outcome->acquire_kind) {
        case AcquireKind::kNew: return "new";
        case AcquireKind::kTakeover: return "takeover";
        case AcquireKind::kRetry: return "retry";
      }
      return "new";
    case ClaimStatus::kInProgress: return "duplicate_in_progress";
    case ClaimStatus::kCompleted: return "duplicate_completed";
    case ClaimStatus::kFailed: return "duplicate_failed";
    case ClaimStatus::kMismatch: return "mismatch";
  }
  return "unknown";
}

std::string_view outcome_name(HandlerOutcome outcome) noexcept { return to_string(outcome); }

void annotate_claim(SpanScope& span, const ClaimObservation& observation) {
  span.set_attribute(kMessagingMessageId, observation.event_id);
  span.set_attribute(kKey, observation.key);
  if (!observation.scope.empty()) span.set_attribute(kScope, observation.scope);
  if (!observation.event_type.empty()) span.set_attribute(kEventType, observation.event_type);
  span.set_attribute(kOutcome, outcome_name(observation.outcome));
  if (observation.outcome == nullptr) {
    span.set_error("store error");
    return;
  }
  if (observation.outcome->acquired()) {
    span.set_attribute(kAttempt, static_cast<std::int64_t>(observation.outcome->attempt));
    span.set_attribute(kToken, static_cast<std::int64_t>(observation.outcome->token));
  } else if (observation.outcome->record) {
    span.set_attribute(kAttempt, static_cast<std::int64_t>(observation.outcome->record->attempt));
  }
}

void annotate_handler(SpanScope& span, HandlerOutcome outcome) {
  span.set_attribute(kOutcome, outcome_name(outcome));
  if (outcome != HandlerOutcome::kCompleted) {
    span.set_attribute(kErrorType, outcome_name(outcome));
    span.set_error(outcome_name(outcome));
  }
}

}  // namespace trace

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "unknown";
}

// --- TracingObserver ---------------------------------------------------------

TracingObserver::TracingObserver(std::shared_ptr<Tracer> tracer, TracingOptions options)
    : tracer_(std::move(tracer)), options_(std::move(options)) {}

std::unique_ptr<SpanScope> TracingObserver::start_span(std::string_view name) {
  if (!tracer_) return nullptr;
  std::unique_ptr<SpanScope> span = tracer_->start_span(name);
  if (!span) return nullptr;
  if (!options_.messaging_system.empty()) span->set_attribute(trace::kMessagingSystem, options_.messaging_system);
  span->set_attribute(trace::kMessagingOperation, "process");
  if (!options_.store.empty()) span->set_attribute(trace::kStore, options_.store);
  return span;
}

// --- LoggingObserver ---------------------------------------------------------

LoggingObserver::LoggingObserver(LoggingOptions options) : options_(std::move(options)) {}

namespace {
void emit(const LoggingOptions& options, LogLevel level, LogLine& line) {
  const std::string text = line.finish();
  if (options.sink) {
    options.sink(level, text);
  } else {
    default_sink(level, text);
  }
}
}  // namespace

void LoggingObserver::on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                                    const Error* error) {
  // Successful calls are the metrics' business; a line each would drown
  // the outcomes.
  if (error == nullptr || !enabled(LogLevel::kWarn)) return;
  LogLine line(options_.format, options_.timestamps, LogLevel::kWarn, "idem store error");
  line.add(trace::kStore, store_kind)
      .add("idem.op", to_string(op))
      .add(trace::kErrorType, to_string(error->code()))
      .add("error", error->message())
      .add(trace::kLatencyMs,
           static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()));
  emit(options_, LogLevel::kWarn, line);
}

void LoggingObserver::on_claim(const ClaimObservation& observation) {
  const LogLevel level = claim_level(observation.outcome);
  if (!enabled(level)) return;
  LogLine line(options_.format, options_.timestamps, level, "idem claim");
  if (!observation.scope.empty()) line.add(trace::kScope, observation.scope);
  if (options_.include_keys) line.add(trace::kKey, observation.key);
  line.add(trace::kMessagingMessageId, observation.event_id);
  if (!observation.event_type.empty()) line.add(trace::kEventType, observation.event_type);
  line.add(trace::kOutcome, trace::outcome_name(observation.outcome));
  if (observation.outcome != nullptr && observation.outcome->acquired()) {
    line.add(trace::kAttempt, static_cast<std::int64_t>(observation.outcome->attempt));
    line.add(trace::kToken, static_cast<std::int64_t>(observation.outcome->token));
  } else if (observation.outcome != nullptr && observation.outcome->record) {
    line.add(trace::kAttempt, static_cast<std::int64_t>(observation.outcome->record->attempt));
  }
  emit(options_, level, line);
}

void LoggingObserver::on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) {
  const LogLevel level = handler_level(outcome);
  if (!enabled(level)) return;
  LogLine line(options_.format, options_.timestamps, level, "idem handler");
  if (!scope.empty()) line.add(trace::kScope, scope);
  line.add(trace::kOutcome, trace::outcome_name(outcome));
  line.add(trace::kLatencyMs,
           static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count()));
  emit(options_, level, line);
}

void LoggingObserver::on_fail_open(std::string_view scope, const Error& error) {
  if (!enabled(LogLevel::kError)) return;
  LogLine line(options_.format, options_.timestamps, LogLevel::kError, "idem fail-open: handler ran unprotected");
  if (!scope.empty()) line.add(trace::kScope, scope);
  line.add(trace::kErrorType, to_string(error.code())).add("error", error.message());
  emit(options_, LogLevel::kError, line);
}

std::unique_ptr<SpanScope> LoggingObserver::start_span(std::string_view name) {
  if (!options_.log_spans || !enabled(LogLevel::kDebug)) return nullptr;
  return std::make_unique<LoggingSpan>(options_, name);
}

// --- CompositeObserver -------------------------------------------------------

CompositeObserver::CompositeObserver(std::vector<std::shared_ptr<Observer>> observers)
    : observers_(std::move(observers)) {
  std::erase(observers_, nullptr);
}

void CompositeObserver::on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                                      const Error* error) {
  for (auto& o : observers_) o->on_store_call(store_kind, op, latency, error);
}

void CompositeObserver::on_claim(const ClaimObservation& observation) {
  for (auto& o : observers_) o->on_claim(observation);
}

void CompositeObserver::on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) {
  for (auto& o : observers_) o->on_handler(scope, outcome, latency);
}

void CompositeObserver::on_fail_open(std::string_view scope, const Error& error) {
  for (auto& o : observers_) o->on_fail_open(scope, error);
}

void CompositeObserver::on_circuit_state(std::string_view store_kind, CircuitState state) {
  for (auto& o : observers_) o->on_circuit_state(store_kind, state);
}

std::unique_ptr<SpanScope> CompositeObserver::start_span(std::string_view name) {
  std::vector<std::unique_ptr<SpanScope>> spans;
  for (auto& o : observers_) {
    if (auto span = o->start_span(name)) spans.push_back(std::move(span));
  }
  if (spans.empty()) return nullptr;
  if (spans.size() == 1) return std::move(spans.front());
  return std::make_unique<CompositeSpan>(std::move(spans));
}

}  // namespace idem
