#include "integration/nats_support.h"

#include <nats/nats.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "integrations/nats/connection_impl.h"

namespace idem::test {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<ConsumerState> consumer_state(nats::Connection& connection, const std::string& stream,
                                            const std::string& durable, std::string* error) {
  jsConsumerInfo* info = nullptr;
  jsErrCode code{};
  const natsStatus s = js_GetConsumerInfo(&info, connection.impl().js, stream.c_str(), durable.c_str(), nullptr, &code);
  if (s != NATS_OK || info == nullptr) {
    if (error != nullptr) *error = natsStatus_GetText(s);
    return std::nullopt;
  }
  ConsumerState state;
  state.num_pending = info->NumPending;
  state.num_ack_pending = static_cast<std::uint64_t>(info->NumAckPending);
  state.num_redelivered = static_cast<std::uint64_t>(info->NumRedelivered);
  state.ack_floor_stream = info->AckFloor.Stream;
  jsConsumerInfo_Destroy(info);
  return state;
}

std::string StoredMessage::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

std::vector<StoredMessage> stream_messages(nats::Connection& connection, const std::string& stream,
                                           std::string* error) {
  std::vector<StoredMessage> out;
  jsCtx* js = connection.impl().js;
  jsStreamInfo* info = nullptr;
  jsErrCode code{};
  natsStatus s = js_GetStreamInfo(&info, js, stream.c_str(), nullptr, &code);
  if (s != NATS_OK || info == nullptr) {
    if (error != nullptr) *error = natsStatus_GetText(s);
    return out;
  }
  const std::uint64_t first = info->State.FirstSeq;
  const std::uint64_t last = info->State.LastSeq;
  jsStreamInfo_Destroy(info);
  for (std::uint64_t seq = first; seq != 0 && seq <= last; ++seq) {
    natsMsg* msg = nullptr;
    s = js_GetMsg(&msg, js, stream.c_str(), seq, nullptr, &code);
    if (s != NATS_OK || msg == nullptr) continue;  // deleted
    StoredMessage m;
    m.sequence = seq;
    m.subject = natsMsg_GetSubject(msg) != nullptr ? natsMsg_GetSubject(msg) : "";
    m.data.assign(natsMsg_GetData(msg) != nullptr ? natsMsg_GetData(msg) : "",
                  static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK && keys != nullptr) {
      for (int i = 0; i < count; ++i) {
        const char** values = nullptr;
        int n = 0;
        if (natsMsgHeader_Values(msg, keys[i], &values, &n) == NATS_OK && values != nullptr) {
          for (int j = 0; j < n; ++j) m.headers.emplace_back(keys[i], values[j]);
          std::free(static_cast<void*>(values));
        }
      }
      std::free(static_cast<void*>(keys));
    }
    natsMsg_Destroy(msg);
    out.push_back(std::move(m));
  }
  return out;
}

// --- FlakyStore ----------------------------------------------------------------

Error FlakyStore::outage() {
  refused_.fetch_add(1);
  return Error(ErrorCode::kUnavailable, "flaky: the store is down (test outage)");
}
Result<ClaimOutcome> FlakyStore::claim(const ClaimRequest& r) {
  if (down_.load()) return outage();
  return inner_->claim(r);
}
Result<std::vector<ClaimOutcome>> FlakyStore::claim_many(std::span<const ClaimRequest> r) {
  if (down_.load()) return outage();
  return inner_->claim_many(r);
}
Status FlakyStore::complete(const CompleteRequest& r) {
  if (down_.load()) return outage();
  return inner_->complete(r);
}
Status FlakyStore::fail(const FailRequest& r) {
  if (down_.load()) return outage();
  return inner_->fail(r);
}
Status FlakyStore::extend(std::string_view key, Token token, std::chrono::milliseconds lease) {
  if (down_.load()) return outage();
  return inner_->extend(key, token, lease);
}
Result<std::optional<IdempotencyRecord>> FlakyStore::get(std::string_view key) {
  if (down_.load()) return outage();
  return inner_->get(key);
}

// --- NativeAsyncStore ----------------------------------------------------------

NativeAsyncStore::NativeAsyncStore(std::shared_ptr<Store> inner)
    : ForwardingStore(std::move(inner)), io_([this] {
        std::unique_lock lock(mutex_);
        while (true) {
          wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
          if (queue_.empty()) return;  // stopping, and everything answered
          auto task = std::move(queue_.front());
          queue_.pop_front();
          lock.unlock();
          task();
          task = nullptr;
          lock.lock();
        }
      }) {}

NativeAsyncStore::~NativeAsyncStore() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  io_.join();
}

void NativeAsyncStore::post(std::function<void()> task) {
  calls_.fetch_add(1);
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
}

void NativeAsyncStore::claim_async(const ClaimRequest& request, ResultCallback<ClaimOutcome> done) {
  // The request's views only live until we return: copy what they point to.
  auto key = std::make_shared<std::string>(request.key);
  auto id = std::make_shared<std::string>(request.event_id);
  auto type = std::make_shared<std::string>(request.event_type);
  auto fp = std::make_shared<std::string>(request.fingerprint);
  ClaimRequest copy = request;
  post([this, key, id, type, fp, copy, done = std::move(done)]() mutable {
    copy.key = *key;
    copy.event_id = *id;
    copy.event_type = *type;
    copy.fingerprint = *fp;
    done(inner_->claim(copy));
  });
}

void NativeAsyncStore::claim_many_async(std::span<const ClaimRequest> requests,
                                        ResultCallback<std::vector<ClaimOutcome>> done) {
  auto strings = std::make_shared<std::vector<std::string>>();
  strings->reserve(requests.size() * 4);
  auto copies = std::make_shared<std::vector<ClaimRequest>>(requests.begin(), requests.end());
  for (const ClaimRequest& r : requests) {
    strings->emplace_back(r.key);
    strings->emplace_back(r.event_id);
    strings->emplace_back(r.event_type);
    strings->emplace_back(r.fingerprint);
  }
  for (std::size_t i = 0; i < copies->size(); ++i) {
    (*copies)[i].key = (*strings)[4 * i];
    (*copies)[i].event_id = (*strings)[4 * i + 1];
    (*copies)[i].event_type = (*strings)[4 * i + 2];
    (*copies)[i].fingerprint = (*strings)[4 * i + 3];
  }
  post([this, strings, copies, done = std::move(done)] { done(inner_->claim_many(*copies)); });
}

void NativeAsyncStore::complete_async(const CompleteRequest& request, StatusCallback done) {
  auto key = std::make_shared<std::string>(request.key);
  auto result = std::make_shared<std::string>(request.result);
  CompleteRequest copy = request;
  post([this, key, result, copy, done = std::move(done)]() mutable {
    copy.key = *key;
    copy.result = *result;
    done(inner_->complete(copy));
  });
}

void NativeAsyncStore::fail_async(const FailRequest& request, StatusCallback done) {
  auto key = std::make_shared<std::string>(request.key);
  auto error = std::make_shared<std::string>(request.error);
  FailRequest copy = request;
  post([this, key, error, copy, done = std::move(done)]() mutable {
    copy.key = *key;
    copy.error = *error;
    done(inner_->fail(copy));
  });
}

void NativeAsyncStore::extend_async(std::string_view key, Token token, std::chrono::milliseconds lease,
                                    StatusCallback done) {
  post([this, k = std::string(key), token, lease, done = std::move(done)] { done(inner_->extend(k, token, lease)); });
}

void NativeAsyncStore::get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) {
  post([this, k = std::string(key), done = std::move(done)] { done(inner_->get(k)); });
}

}  // namespace idem::test
