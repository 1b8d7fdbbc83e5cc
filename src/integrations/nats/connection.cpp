// Connection: one nats.c connection with its JetStream context, reconnecting
// by itself; and the JetStream stream set-up shared by workers and tools.
#include <nats/nats.h>

#include <algorithm>
#include <string>
#include <vector>

#include "idem/integrations/nats.h"
#include "integrations/nats/connection_impl.h"
#include "integrations/nats/handles.h"

namespace idem::nats {
namespace detail {

bool retryable_status(natsStatus status) noexcept {
  switch (status) {
    case NATS_TIMEOUT:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
    case NATS_NOT_YET_CONNECTED:
    case NATS_SLOW_CONSUMER:
    case NATS_MISSED_HEARTBEAT: return true;
    default: return false;
  }
}

Error nats_error(natsStatus status, jsErrCode js_code, std::string_view what) {
  std::string message = "nats: " + std::string(what) + ": " + natsStatus_GetText(status);
  natsStatus last = NATS_OK;
  if (const char* text = nats_GetLastError(&last); text != nullptr && *text != '\0' && last != NATS_OK) {
    message += " (";
    message += text;
    message += ')';
  }
  if (static_cast<int>(js_code) != 0) message += " [JetStream error " + std::to_string(static_cast<int>(js_code)) + "]";
  ErrorCode code = ErrorCode::kInternal;
  if (status == NATS_TIMEOUT) {
    code = ErrorCode::kTimeout;
  } else if (retryable_status(status) || status == NATS_CONNECTION_CLOSED) {
    code = ErrorCode::kUnavailable;
  } else if (status == NATS_NOT_FOUND || js_code == JSStreamNotFoundErr || js_code == JSConsumerNotFoundErr) {
    code = ErrorCode::kNotFound;
  } else if (status == NATS_MAX_PAYLOAD) {
    code = ErrorCode::kInvalidArgument;  // this message is too large: no retry helps
  } else if (status == NATS_INVALID_ARG || status == NATS_INVALID_SUBJECT || status == NATS_ADDRESS_MISSING ||
             status == NATS_CONNECTION_AUTH_FAILED || status == NATS_NOT_PERMITTED ||
             status == NATS_SECURE_CONNECTION_WANTED || status == NATS_SECURE_CONNECTION_REQUIRED) {
    code = ErrorCode::kInvalidConfiguration;  // the program or its settings, not the message
  }
  return Error(code, std::move(message));
}

ConnectionImpl::~ConnectionImpl() {
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) {
    natsConnection_Close(nc);
    std::unique_lock lock(closed_mutex);
    // Bounded: the callback thread normally runs it within microseconds.
    closed_cv.wait_for(lock, std::chrono::seconds(5), [this] { return closed; });
    lock.unlock();
    natsConnection_Destroy(nc);
  }
}

namespace {

void emit(ConnectionImpl* impl, ConnectionEvent event, std::string_view detail) {
  if (!impl->options.on_event) return;
  try {
    impl->options.on_event(event, detail);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a C callback must not throw
  }
}

void on_disconnected(natsConnection* /*nc*/, void* closure) {
  emit(static_cast<ConnectionImpl*>(closure), ConnectionEvent::kDisconnected, "disconnected");
}

void on_reconnected(natsConnection* nc, void* closure) {
  auto* impl = static_cast<ConnectionImpl*>(closure);
  impl->reconnects.fetch_add(1, std::memory_order_relaxed);
  char url[256] = {};
  (void)natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  emit(impl, ConnectionEvent::kReconnected, url);
}

void on_closed(natsConnection* /*nc*/, void* closure) {
  auto* impl = static_cast<ConnectionImpl*>(closure);
  emit(impl, ConnectionEvent::kClosed, "closed");
  // Notify under the lock: the destructor may free the condition variable
  // as soon as it sees `closed`.
  std::lock_guard lock(impl->closed_mutex);
  impl->closed = true;
  impl->closed_cv.notify_all();
}

void on_error(natsConnection* /*nc*/, natsSubscription* /*sub*/, natsStatus status, void* closure) {
  emit(static_cast<ConnectionImpl*>(closure), ConnectionEvent::kError, natsStatus_GetText(status));
}

std::vector<std::string> split_urls(std::string_view urls) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= urls.size()) {
    std::size_t end = urls.find(',', start);
    if (end == std::string_view::npos) end = urls.size();
    std::string_view part = urls.substr(start, end - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    start = end + 1;
  }
  return out;
}

std::int64_t to_nanos(std::chrono::milliseconds ms) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

}  // namespace
}  // namespace detail

std::string_view to_string(ConnectionEvent event) noexcept {
  switch (event) {
    case ConnectionEvent::kDisconnected: return "disconnected";
    case ConnectionEvent::kReconnected: return "reconnected";
    case ConnectionEvent::kClosed: return "closed";
    case ConnectionEvent::kError: return "error";
  }
  return "unknown";
}

Status ConnectionOptions::validate() const {
  if (detail::split_urls(url).empty()) return Error(ErrorCode::kInvalidConfiguration, "nats: no server URL given");
  if (connect_timeout.count() <= 0) {
    return Error(ErrorCode::kInvalidConfiguration, "nats: connect_timeout must be positive");
  }
  if (reconnect_wait.count() < 0)
    return Error(ErrorCode::kInvalidConfiguration, "nats: reconnect_wait must not be negative");
  if (api_timeout.count() <= 0) return Error(ErrorCode::kInvalidConfiguration, "nats: api_timeout must be positive");
  if (max_reconnect < -1) {
    return Error(ErrorCode::kInvalidConfiguration, "nats: max_reconnect must be -1 (forever) or more");
  }
  return {};
}

Connection::Connection(std::unique_ptr<detail::ConnectionImpl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;

bool Connection::connected() const noexcept { return natsConnection_Status(impl_->nc) == NATS_CONN_STATUS_CONNECTED; }
std::uint64_t Connection::reconnects() const noexcept { return impl_->reconnects.load(std::memory_order_relaxed); }
const ConnectionOptions& Connection::options() const noexcept { return impl_->options; }

Result<std::shared_ptr<Connection>> Connection::connect(ConnectionOptions options) {
  if (Status valid = options.validate(); !valid) return std::move(valid).error();
  auto impl = std::make_unique<detail::ConnectionImpl>();
  impl->options = std::move(options);
  const ConnectionOptions& o = impl->options;

  natsOptions* raw = nullptr;
  natsStatus s = natsOptions_Create(&raw);
  detail::OptionsPtr opts(raw);
  const std::vector<std::string> urls = detail::split_urls(o.url);
  std::vector<const char*> url_ptrs;
  for (const std::string& u : urls) url_ptrs.push_back(u.c_str());
  if (s == NATS_OK) s = natsOptions_SetServers(opts.get(), url_ptrs.data(), static_cast<int>(url_ptrs.size()));
  if (s == NATS_OK) s = natsOptions_SetName(opts.get(), o.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts.get(), o.connect_timeout.count());
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts.get(), true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts.get(), o.max_reconnect);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts.get(), o.reconnect_wait.count());
  // A dead server on another host is noticed by pings, not by TCP: keep the
  // window short so consumers resume quickly after a failover.
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts.get(), 5'000);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts.get(), 2);
  // Publishes waiting for a PubAck fail at once on a disconnect (and are
  // retried by the Publisher) instead of waiting out their timeout.
  if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(opts.get(), true);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts.get(), detail::on_disconnected, impl.get());
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts.get(), detail::on_reconnected, impl.get());
  if (s == NATS_OK) s = natsOptions_SetClosedCB(opts.get(), detail::on_closed, impl.get());
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts.get(), detail::on_error, impl.get());
  if (s != NATS_OK) return detail::nats_error(s, jsErrCode{}, "invalid connection options");

  s = natsConnection_Connect(&impl->nc, opts.get());
  if (s != NATS_OK) {
    impl->nc = nullptr;
    Error error = detail::nats_error(s, jsErrCode{}, "cannot connect to " + o.url);
    if (error.code() == ErrorCode::kInternal) error = Error(ErrorCode::kUnavailable, error.message());
    return error;
  }
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = o.api_timeout.count();
  s = natsConnection_JetStream(&impl->js, impl->nc, &js_options);
  if (s != NATS_OK) {
    impl->js = nullptr;
    return detail::nats_error(s, jsErrCode{}, "cannot create a JetStream context");
  }
  return std::shared_ptr<Connection>(new Connection(std::move(impl)));
}

Status ensure_stream(Connection& connection, const StreamSettings& settings) {
  if (settings.name.empty()) return Error(ErrorCode::kInvalidConfiguration, "nats: stream name is empty");
  if (settings.subjects.empty()) {
    return Error(ErrorCode::kInvalidConfiguration, "nats: stream '" + settings.name + "' needs at least one subject");
  }
  jsCtx* js = connection.impl().js;
  jsStreamInfo* raw_info = nullptr;
  jsErrCode js_code{};
  natsStatus s = js_GetStreamInfo(&raw_info, js, settings.name.c_str(), nullptr, &js_code);
  detail::StreamInfoPtr info(raw_info);
  if (s == NATS_OK) return {};
  if (s != NATS_NOT_FOUND && js_code != JSStreamNotFoundErr) {
    return detail::nats_error(s, js_code, "stream info of '" + settings.name + "'");
  }

  std::vector<const char*> subjects;
  for (const std::string& subject : settings.subjects) subjects.push_back(subject.c_str());
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = settings.name.c_str();
  config.Subjects = subjects.data();
  config.SubjectsLen = static_cast<int>(subjects.size());
  config.Storage = settings.memory_storage ? js_MemoryStorage : js_FileStorage;
  config.Duplicates = detail::to_nanos(settings.duplicate_window);
  config.MaxAge = detail::to_nanos(settings.max_age);
  raw_info = nullptr;
  s = js_AddStream(&raw_info, js, &config, nullptr, &js_code);
  info.reset(raw_info);
  // Another worker may have created it between our two calls.
  if (s == NATS_OK || js_code == JSStreamNameExistErr) return {};
  return detail::nats_error(s, js_code, "cannot create stream '" + settings.name + "'");
}

}  // namespace idem::nats
