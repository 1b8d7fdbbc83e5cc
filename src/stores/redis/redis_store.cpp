// RedisStore: the Store interface over the scripts in scripts.h, with routing
// (standalone, Sentinel, Cluster), retries and a circuit breaker.
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "idem/stores/redis.h"
#include "stores/redis/connection.h"
#include "stores/redis/scripts.h"

namespace idem {
namespace {

namespace rd = redis_detail;
using rd::Failure;
using rd::map_error;
using rd::ReplyPtr;
using std::chrono::milliseconds;

constexpr std::size_t kSlots = 16384;

std::string sha1_hex(std::string_view text) {
  std::array<unsigned char, SHA_DIGEST_LENGTH> md{};
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : md) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

struct Script {
  std::string body;
  std::string sha;
};

Script make_script(std::string_view body, std::string_view before_prelude = {}) {
  std::string full(before_prelude);
  full.append(rd::kPrelude);
  full.append(body);
  std::string sha = sha1_hex(full);
  return Script{std::move(full), std::move(sha)};
}

// A script that needs none of the prelude's helpers.
Script plain_script(std::string_view body) { return Script{std::string(body), sha1_hex(body)}; }

// A scan cursor that stops inside a SCAN batch names the last key it
// returned, hex-encoded so that keys containing ':' cannot break the cursor.
std::string hex_encode(std::string_view text) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() * 2);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    out.push_back(kDigits[byte >> 4U]);
    out.push_back(kDigits[byte & 0x0FU]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = nibble(hex[i]);
    const int low = nibble(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>((high << 4) | low));
  }
  return out;
}

// SCAN's COUNT stays the same for every call, whatever the page size: a page
// that ends inside a batch is resumed by repeating the same SCAN cursor, and
// only the same COUNT gives back the same batch.
constexpr std::string_view kScanCount = "128";

std::string to_dec(long long value) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  (void)ec;
  return std::string(buf.data(), end);
}
std::string to_dec_u(std::uint64_t value) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  (void)ec;
  return std::string(buf.data(), end);
}

std::string_view reply_text(const redisReply* r) {
  if (r == nullptr ||
      (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR) ||
      r->str == nullptr) {
    return {};
  }
  return std::string_view(r->str, r->len);
}

// Integers come back as integers from Lua numbers and as strings from stored
// fields; accept both, reject anything else.
bool reply_int(const redisReply* r, long long& out) {
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_INTEGER) {
    out = r->integer;
    return true;
  }
  if (r->type != REDIS_REPLY_STRING || r->str == nullptr) return false;
  auto [ptr, ec] = std::from_chars(r->str, r->str + r->len, out);
  return ec == std::errc() && ptr == r->str + r->len;
}

bool text_int(std::string_view text, long long& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

Error bad_reply(std::string_view what) {
  return map_error(Failure::kUnexpected, "unexpected reply: " + std::string(what));
}

Timestamp ms_to_ts(long long ms) { return Timestamp(milliseconds(ms)); }

// parse_record() decodes the packed layout of scripts.h. kCorrupt when the
// value is not a well-formed record (never trusts a length it was given).
Result<IdempotencyRecord> parse_record(std::string_view key, long long expire_at_ms, std::string_view v) {
  auto corrupt = [&](std::string_view why) {
    return Error(ErrorCode::kCorrupt,
                 "redis: record '" + std::string(key) + "' cannot be decoded: " + std::string(why));
  };
  std::size_t pos = 0;
  // next() returns the text up to `sep` and moves past it.
  auto next = [&](char sep, std::string_view& out) {
    const auto end = v.find(sep, pos);
    if (end == std::string_view::npos) return false;
    out = v.substr(pos, end - pos);
    pos = end + 1;
    return true;
  };
  auto number = [](std::string_view text, long long& out) { return text_int(text, out) && out >= 0; };
  std::array<std::string_view, 7> head{};
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (!next(i + 1 == head.size() ? ';' : ',', head[i])) return corrupt("truncated header");
  }
  std::array<std::string_view, 7> lens{};
  for (std::size_t i = 0; i < lens.size(); ++i) {
    if (!next(i + 1 == lens.size() ? ';' : ',', lens[i])) return corrupt("truncated lengths");
  }
  IdempotencyRecord rec;
  rec.idempotency_key = std::string(key);
  const std::string_view s = head[0];
  if (s == "P") {
    rec.status = ProcessingStatus::kProcessing;
  } else if (s == "C") {
    rec.status = ProcessingStatus::kCompleted;
  } else if (s == "F") {
    rec.status = ProcessingStatus::kFailed;
  } else if (s == "X") {
    rec.status = ProcessingStatus::kFailed;
    rec.retryable = false;
  } else {
    return corrupt("unknown status");
  }
  long long token = 0;
  long long attempt = 0;
  long long first = 0;
  if (!number(head[1], token) || !number(head[2], attempt) || attempt > UINT32_MAX || !number(head[3], first)) {
    return corrupt("bad token, attempt or first-seen time");
  }
  rec.token = static_cast<Token>(token);
  rec.attempt = static_cast<std::uint32_t>(attempt);
  rec.first_seen_at = ms_to_ts(first);
  if (!head[5].empty()) {
    long long delta = 0;
    if (!number(head[5], delta)) return corrupt("bad completion time");
    rec.completed_at = ms_to_ts(first + delta);
  }
  if (!head[4].empty()) {
    long long lease = 0;
    if (!number(head[4], lease)) return corrupt("bad lease");
    rec.lease_expires_at = ms_to_ts(lease);
  } else {
    // The lease is dropped once the record leaves PROCESSING (it saves
    // bytes); it ended when the record was completed or failed.
    rec.lease_expires_at = rec.completed_at.value_or(rec.first_seen_at);
  }
  // Values: e (only in mode 'e'), y, p, r, x, kn, kd.
  std::array<std::optional<std::string_view>, 7> values{};
  for (std::size_t i = 0; i < lens.size(); ++i) {
    if (lens[i].empty()) {
      if (i < 3) return corrupt("missing length");
      continue;
    }
    long long n = 0;
    if (!number(lens[i], n)) return corrupt("bad length");
    const auto len = static_cast<std::size_t>(n);
    if (i == 0 && head[6] == "E") {
      if (len > key.size()) return corrupt("event id longer than the key");
      values[0] = key.substr(key.size() - len);
      continue;
    }
    if (i == 0 && head[6] != "e") return corrupt("unknown event id mode");
    if (len > v.size() - pos) return corrupt("value shorter than its lengths");
    values[i] = v.substr(pos, len);
    pos += len;
  }
  if (pos != v.size()) return corrupt("trailing bytes");
  rec.event_id = std::string(*values[0]);
  rec.event_type = std::string(*values[1]);
  rec.fingerprint = std::string(*values[2]);
  if (values[3]) rec.result = std::string(*values[3]);
  if (values[4]) rec.error = std::string(*values[4]);
  if (values[5]) rec.checkpoint = Checkpoint{std::string(*values[5]), std::string(values[6].value_or(""))};
  // -1: no TTL (never written by this store; someone ran PERSIST).
  rec.expires_at = expire_at_ms >= 0 ? ms_to_ts(expire_at_ms) : Timestamp::max();
  return rec;
}

std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  for (char ch : data) {
    const auto c = static_cast<unsigned char>(ch);
    crc = static_cast<std::uint16_t>(crc ^ (c << 8));
    for (int i = 0; i < 8; ++i) {
      crc =
          (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021) : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc;
}

// key_slot() follows the Cluster spec, hash tags included.
std::size_t key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) % kSlots;
}

std::string glob_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// ---------------------------------------------------------------------------

class CircuitBreaker {
 public:
  explicit CircuitBreaker(RedisCircuitBreakerOptions options, std::function<void(CircuitState)> on_change)
      : options_(options), on_change_(std::move(on_change)) {}

  // allow() says whether a call may go to Redis now.
  bool allow() {
    if (!options_.enabled) return true;
    // Lock-free while closed: the breaker must not become the one mutex every
    // call of every thread goes through.
    if (state_.load(std::memory_order_acquire) == CircuitState::kClosed) return true;
    std::optional<CircuitState> changed;
    bool ok = true;
    {
      std::lock_guard lock(mutex_);
      const CircuitState state = state_.load(std::memory_order_relaxed);
      if (state == CircuitState::kOpen) {
        if (std::chrono::steady_clock::now() - opened_at_ >= options_.open_duration) {
          state_.store(CircuitState::kHalfOpen, std::memory_order_release);
          probing_ = true;  // this caller is the probe
          changed = CircuitState::kHalfOpen;
        } else {
          ok = false;
        }
      } else if (state == CircuitState::kHalfOpen) {
        ok = !probing_;
        probing_ = true;
      }
    }
    notify(changed);
    return ok;
  }

  void record(bool success) {
    if (!options_.enabled) return;
    if (success && state_.load(std::memory_order_acquire) == CircuitState::kClosed &&
        failures_.load(std::memory_order_relaxed) == 0) {
      return;
    }
    std::optional<CircuitState> changed;
    {
      std::lock_guard lock(mutex_);
      const CircuitState state = state_.load(std::memory_order_relaxed);
      if (success) {
        failures_.store(0, std::memory_order_relaxed);
        if (state != CircuitState::kClosed) {
          state_.store(CircuitState::kClosed, std::memory_order_release);
          probing_ = false;
          changed = CircuitState::kClosed;
        }
      } else {
        const std::uint32_t failures = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (state == CircuitState::kHalfOpen ||
            (state == CircuitState::kClosed && failures >= options_.failure_threshold)) {
          state_.store(CircuitState::kOpen, std::memory_order_release);
          probing_ = false;
          opened_at_ = std::chrono::steady_clock::now();
          changed = CircuitState::kOpen;
        }
      }
    }
    notify(changed);
  }

  CircuitState state() const noexcept { return state_.load(std::memory_order_acquire); }

 private:
  void notify(std::optional<CircuitState> changed) {
    if (changed && on_change_) on_change_(*changed);
  }

  RedisCircuitBreakerOptions options_;
  std::function<void(CircuitState)> on_change_;
  std::mutex mutex_;  // serializes transitions; reads of state_ need no lock
  std::atomic<CircuitState> state_{CircuitState::kClosed};
  std::atomic<std::uint32_t> failures_{0};
  bool probing_ = false;
  std::chrono::steady_clock::time_point opened_at_{};
};

struct Node {
  RedisEndpoint endpoint;
  std::vector<std::unique_ptr<rd::Channel>> channels;
  std::atomic<std::size_t> next{0};

  rd::Channel& pick() { return *channels[next.fetch_add(1, std::memory_order_relaxed) % channels.size()]; }
  void reset() {
    for (auto& c : channels) c->reset();
  }
};

// One command with one reply: a script call on a key, or a plain command.
struct Call {
  const Script* script = nullptr;  // nullptr: `args` is the whole command
  std::string_view key;            // routing key (scripts); empty: use `node`
  std::vector<std::string_view> args;
  bool wait = false;               // WAIT follows the script (claims)
  std::array<std::string, 3> own;  // storage for formatted numbers
  Node* node = nullptr;            // set by routing, or preset for plain commands
  bool asking = false;             // ASKING precedes the command (Cluster ASK)
  bool use_eval = false;           // NOSCRIPT seen: send the body
};

struct CallReply {
  ReplyPtr main;
  ReplyPtr wait;
};

// Per-attempt information for the retry loop.
struct Attempt {
  std::uint32_t number = 1;
  bool maybe_executed = false;  // the request may have reached Redis
  bool redis_answered = false;  // an error that is not Redis's health (WAIT shortfall)
};

struct Unit {};

// ---------------------------------------------------------------------------

class RedisStoreImpl final : public Store {
 public:
  RedisStoreImpl(RedisStoreOptions options, std::shared_ptr<rd::TlsContext> tls)
      : options_(std::move(options)),
        tls_(std::move(tls)),
        breaker_(options_.circuit_breaker, options_.on_circuit_change),
        // complete and fail share one script (index 1 and 2).
        scripts_{make_script(rd::kClaimScript, rd::kClaimFastPath),
                 plain_script(rd::kFinishScript),
                 plain_script(rd::kFinishScript),
                 make_script(rd::kExtendScript),
                 make_script(rd::kCheckpointScript),
                 plain_script(rd::kGetScript)} {
    // Every new connection authenticates, selects the db and loads the
    // scripts in one pipelined round trip, so NOSCRIPT is rare (SCRIPT FLUSH).
    if (!options_.password.empty()) {
      if (options_.username.empty()) {
        rd::append_command(handshake_, {"AUTH", options_.password});
      } else {
        rd::append_command(handshake_, {"AUTH", options_.username, options_.password});
      }
      ++handshake_n_;
    }
    if (options_.db != 0) {
      db_text_ = to_dec(options_.db);
      rd::append_command(handshake_, {"SELECT", db_text_});
      ++handshake_n_;
    }
    for (const Script& s : scripts_) {
      rd::append_command(handshake_, {"SCRIPT", "LOAD", s.body});
      ++handshake_n_;
    }
    if (options_.mode == RedisMode::kCluster) {
      slot_table_.fill(nullptr);
    } else {
      single_ = make_node(options_.endpoints.front(), options_.mode == RedisMode::kSentinel);
    }
  }

  std::string_view kind() const noexcept override { return "redis"; }

  RedisClientStats client_stats() const {
    RedisClientStats s;
    s.round_trips = counters_.round_trips.load();
    s.commands = counters_.commands.load();
    s.connects = counters_.connects.load();
    s.retries = retries_.load();
    s.rejected = rejected_.load();
    s.redirects = redirects_.load();
    s.circuit = breaker_.state();
    return s;
  }

  // ---- claim -------------------------------------------------------------

  Result<ClaimOutcome> claim(const ClaimRequest& req) override {
    if (Status st = check_key(req.key); !st) return std::move(st).error();
    return resilient<ClaimOutcome>(false, [&](Attempt& at) -> Result<ClaimOutcome> {
      std::vector<Call> calls(1);
      fill_claim(calls[0], req);
      std::vector<CallReply> replies;
      if (Status st = run(calls, replies, at); !st) return std::move(st).error();
      return parse_claim(req.key, replies[0], at);
    });
  }

  Result<std::vector<ClaimOutcome>> claim_many(std::span<const ClaimRequest> requests) override {
    for (const ClaimRequest& r : requests) {
      if (Status st = check_key(r.key); !st) return std::move(st).error();
    }
    std::vector<std::optional<ClaimOutcome>> done(requests.size());
    std::vector<std::size_t> pending(requests.size());
    for (std::size_t i = 0; i < pending.size(); ++i) pending[i] = i;
    // Items whose reply says "not executed, try again" (LOADING, TRYAGAIN...)
    // are retried alone; a transport failure after sending fails the batch
    // (some claims may be held; they expire with their lease).
    Result<Unit> r = resilient<Unit>(false, [&](Attempt& at) -> Result<Unit> {
      std::vector<Call> calls(pending.size());
      for (std::size_t j = 0; j < pending.size(); ++j) fill_claim(calls[j], requests[pending[j]]);
      std::vector<CallReply> replies;
      if (Status st = run(calls, replies, at); !st) return std::move(st).error();
      std::vector<std::size_t> again;
      std::optional<Error> retry_error;
      for (std::size_t j = 0; j < pending.size(); ++j) {
        const std::size_t i = pending[j];
        const redisReply* main = replies[j].main.get();
        if (main->type == REDIS_REPLY_ERROR && rd::is_retryable_reply(reply_text(main))) {
          again.push_back(i);
          retry_error = map_error(Failure::kServerReply, reply_text(main));
          continue;
        }
        Result<ClaimOutcome> out = parse_claim(requests[i].key, replies[j], at);
        if (!out) return std::move(out).error();
        done[i] = std::move(*out);
      }
      pending = std::move(again);
      if (retry_error) {
        at.maybe_executed = false;
        return *retry_error;
      }
      return Unit{};
    });
    if (!r) return std::move(r).error();
    std::vector<ClaimOutcome> out;
    out.reserve(done.size());
    for (auto& o : done) out.push_back(std::move(*o));
    return out;
  }

  // ---- owner operations -------------------------------------------------

  Status complete(const CompleteRequest& req) override {
    const std::string token = to_dec_u(req.token);
    const std::string ttl = to_dec(req.ttl.count());
    return owner_op(req.key, script(1), {token, "C", req.result, ttl}, "complete");
  }

  Status fail(const FailRequest& req) override {
    const std::string token = to_dec_u(req.token);
    const std::string ttl = to_dec(req.ttl.count());
    return owner_op(req.key, script(2), {token, req.retryable ? "F" : "X", req.error, ttl}, "fail");
  }

  Status extend(std::string_view key, Token token, milliseconds lease) override {
    const std::string tok = to_dec_u(token);
    const std::string ms = to_dec(lease.count());
    return owner_op(key, script(3), {tok, ms}, "extend");
  }

  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    const std::string tok = to_dec_u(token);
    return owner_op(key, script(4), {tok, cp.name, cp.data}, "checkpoint");
  }

  // ---- reads and admin --------------------------------------------------

  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    if (Status st = check_key(key); !st) return std::move(st).error();
    return resilient<std::optional<IdempotencyRecord>>(true,
                                                       [&](Attempt& at) -> Result<std::optional<IdempotencyRecord>> {
                                                         std::vector<Call> calls(1);
                                                         calls[0].script = script(5);
                                                         calls[0].key = key;
                                                         std::vector<CallReply> replies;
                                                         if (Status st = run(calls, replies, at); !st)
                                                           return std::move(st).error();
                                                         return parse_get(key, replies[0].main.get(), at);
                                                       });
  }

  Result<bool> remove(std::string_view key) override {
    if (Status st = check_key(key); !st) return std::move(st).error();
    return resilient<bool>(true, [&](Attempt& at) -> Result<bool> {
      std::vector<Call> calls(1);
      calls[0].key = key;
      calls[0].args = {"DEL", key};
      std::vector<CallReply> replies;
      if (Status st = run(calls, replies, at); !st) return std::move(st).error();
      const redisReply* r = replies[0].main.get();
      if (Status st = reply_error(r, at); !st) return std::move(st).error();
      long long n = 0;
      if (!reply_int(r, n)) return bad_reply("DEL");
      return n > 0;
    });
  }

  // scan() keeps calling SCAN (each call is short on the server) until the
  // page is full or the keyspace is done, within a bound, so that a sparse
  // match or an empty cluster node does not hand back empty pages.
  Result<ScanPage> scan(const ScanOptions& options) override {
    ScanOptions step = options;
    const std::size_t limit = std::max<std::size_t>(options.limit, 1);
    ScanPage out;
    for (int calls = 0; calls < 64; ++calls) {
      step.limit = limit - out.records.size();
      Result<ScanPage> page = resilient<ScanPage>(true, [&](Attempt& at) { return scan_once(step, at); });
      if (!page) return std::move(page).error();
      for (IdempotencyRecord& r : page->records) out.records.push_back(std::move(r));
      out.next_cursor = std::move(page->next_cursor);
      if (out.records.size() >= limit || out.next_cursor.empty()) break;
      step.cursor = out.next_cursor;
    }
    return out;
  }

  Result<StoreStats> stats() override {
    StoreStats st;
    ScanOptions opt;
    opt.limit = 1000;
    for (;;) {
      Result<ScanPage> page = scan(opt);
      if (!page) return std::move(page).error();
      for (IdempotencyRecord& rec : page->records) {
        switch (rec.status) {
          case ProcessingStatus::kProcessing:
            ++st.processing;
            if (!st.oldest_processing || rec.first_seen_at < st.oldest_processing->first_seen_at) {
              st.oldest_processing = std::move(rec);
            }
            break;
          case ProcessingStatus::kCompleted: ++st.completed; break;
          case ProcessingStatus::kFailed: ++st.failed; break;
        }
      }
      if (page->next_cursor.empty()) break;
      opt.cursor = page->next_cursor;
    }
    // used_memory of every node.
    Result<std::vector<Node*>> nodes = scan_nodes();
    if (!nodes) return std::move(nodes).error();
    std::uint64_t bytes = 0;
    for (Node* n : *nodes) {
      Result<std::string> info = plain_on(n, {"INFO", "memory"});
      if (!info) return std::move(info).error();
      const auto pos = info->find("used_memory:");
      if (pos == std::string::npos) continue;
      long long v = 0;
      const auto start = pos + std::strlen("used_memory:");
      const auto end = info->find('\r', start);
      if (text_int(std::string_view(*info).substr(start, end - start), v)) bytes += static_cast<std::uint64_t>(v);
    }
    st.bytes = bytes;
    return st;
  }

  Result<SweepReport> sweep() override { return SweepReport{}; }  // Redis expires keys itself

  CircuitState circuit_state() const noexcept override { return breaker_.state(); }

  Status ping() override {
    Result<std::vector<Node*>> nodes = scan_nodes();
    if (!nodes) return std::move(nodes).error();
    for (Node* n : *nodes) {
      Result<std::string> r = plain_on(n, {"PING"});
      if (!r) return std::move(r).error();
    }
    return {};
  }

 private:
  const Script* script(std::size_t i) const { return &scripts_[i]; }

  static Status check_key(std::string_view key) {
    if (key.empty()) return Error(ErrorCode::kInvalidArgument, "redis: empty key");
    return {};
  }

  void fill_claim(Call& c, const ClaimRequest& req) const {
    c.script = script(0);
    c.key = req.key;
    c.wait = options_.wait_replicas > 0;
    // When the key ends with the event id (the default: the idempotency key
    // is the event id), the record stores only its length.
    const bool suffix = !req.event_id.empty() && req.key.ends_with(req.event_id);
    c.own[1] = to_dec(req.lease.count());
    c.own[2] = to_dec(req.ttl.count());
    c.args = {req.event_id, suffix ? "E" : "e", req.event_type, req.fingerprint, c.own[1], c.own[2]};
  }

  // reply_error() turns an error reply into an Error (and marks retryable
  // ones as not executed, which they are not).
  Status reply_error(const redisReply* r, Attempt& at) {
    if (r->type != REDIS_REPLY_ERROR) return {};
    const std::string_view text = reply_text(r);
    if (rd::is_retryable_reply(text)) at.maybe_executed = false;
    return map_error(Failure::kServerReply, text);
  }

  Result<ClaimOutcome> parse_claim(std::string_view key, const CallReply& reply, Attempt& at) {
    const redisReply* r = reply.main.get();
    if (Status st = reply_error(r, at); !st) return std::move(st).error();
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return bad_reply("claim: not an array");
    const std::string_view tag = reply_text(r->element[0]);
    ClaimOutcome out;
    if (tag == "A") {
      long long token = 0;
      long long attempt = 0;
      long long lease = 0;
      if (r->elements < 5 || !reply_int(r->element[2], token) || !reply_int(r->element[3], attempt) ||
          !reply_int(r->element[4], lease) || token < 0 || attempt < 0) {
        return bad_reply("claim: malformed acquire");
      }
      const std::string_view kind = reply_text(r->element[1]);
      out.status = ClaimStatus::kAcquired;
      out.acquire_kind = kind == "T" ? AcquireKind::kTakeover : kind == "R" ? AcquireKind::kRetry : AcquireKind::kNew;
      out.token = static_cast<Token>(token);
      out.attempt = static_cast<std::uint32_t>(attempt);
      out.lease_expires_at = ms_to_ts(lease);
      if (r->elements >= 7 && out.acquire_kind != AcquireKind::kNew) {
        out.checkpoint = Checkpoint{std::string(reply_text(r->element[5])), std::string(reply_text(r->element[6]))};
      }
      if (options_.wait_replicas > 0) {
        long long acked = 0;
        if (!reply.wait || !reply_int(reply.wait.get(), acked)) return bad_reply("WAIT");
        if (acked < static_cast<long long>(options_.wait_replicas)) {
          at.redis_answered = true;
          return map_error(Failure::kNotConfirmed,
                           "claim of '" + std::string(key) + "' reached " + to_dec(acked) + " of " +
                               to_dec(options_.wait_replicas) +
                               " replicas within the WAIT timeout; not running the handler (the key stays "
                               "PROCESSING until its lease expires)");
        }
      }
      return out;
    }
    if (r->elements < 3) return bad_reply("claim: short reply");
    if (tag == "C") {
      out.status = ClaimStatus::kCompleted;
    } else if (tag == "F") {
      out.status = ClaimStatus::kFailed;
    } else if (tag == "I") {
      out.status = ClaimStatus::kInProgress;
    } else if (tag == "M") {
      out.status = ClaimStatus::kMismatch;
    } else {
      return bad_reply("claim: unknown status");
    }
    long long expire_at = 0;
    if (!reply_int(r->element[1], expire_at) || r->element[2]->type != REDIS_REPLY_STRING) {
      return bad_reply("claim: bad record reply");
    }
    Result<IdempotencyRecord> rec = parse_record(key, expire_at, reply_text(r->element[2]));
    if (!rec) return std::move(rec).error();
    out.record = std::move(*rec);
    return out;
  }

  Result<std::optional<IdempotencyRecord>> parse_get(std::string_view key, const redisReply* r, Attempt& at) {
    if (Status st = reply_error(r, at); !st) return std::move(st).error();
    if (r->type == REDIS_REPLY_NIL) return std::optional<IdempotencyRecord>();
    long long expire_at = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_int(r->element[0], expire_at) ||
        r->element[1]->type != REDIS_REPLY_STRING) {
      return bad_reply("get");
    }
    Result<IdempotencyRecord> rec = parse_record(key, expire_at, reply_text(r->element[1]));
    if (!rec) return std::move(rec).error();
    return std::optional<IdempotencyRecord>(std::move(*rec));
  }

  Status owner_op(std::string_view key, const Script* s, std::vector<std::string_view> args, const char* what) {
    if (Status st = check_key(key); !st) return st;
    // Safe to retry even when the first try may have run: a repeated
    // complete/fail is recognised by the script (-2, same token, same final
    // state); extend and checkpoint write the same values again.
    Result<Unit> r = resilient<Unit>(true, [&](Attempt& at) -> Result<Unit> {
      std::vector<Call> calls(1);
      calls[0].script = s;
      calls[0].key = key;
      calls[0].args = args;
      std::vector<CallReply> replies;
      if (Status st = run(calls, replies, at); !st) return std::move(st).error();
      const redisReply* rep = replies[0].main.get();
      if (Status st = reply_error(rep, at); !st) return std::move(st).error();
      long long code = 0;
      if (!reply_int(rep, code)) return bad_reply(what);
      auto lost = [&](const char* why) {
        return Error(ErrorCode::kLeaseLost, "redis: " + std::string(what) + " of '" + std::string(key) +
                                                "': lease lost: " + why +
                                                "; another worker owns the key now, do not retry");
      };
      switch (code) {
        case 1: return Unit{};
        case 0: return lost("the record no longer exists");
        case -1: return lost("the fencing token is stale");
        case -2:
          // Our own earlier try got through but its reply was lost.
          if (at.number > 1) return Unit{};
          return lost("the record is no longer PROCESSING");
        case -3: return lost("the record is no longer PROCESSING");
        default: return bad_reply(what);
      }
    });
    if (!r) return std::move(r).error();
    return {};
  }

  // ---- retries and the breaker -----------------------------------------

  template <typename T, typename F>
  Result<T> resilient(bool idempotent, F&& attempt_fn) {
    std::uint32_t number = 1;
    for (;;) {
      if (!breaker_.allow()) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        return map_error(Failure::kCircuitOpen,
                         "circuit breaker open after repeated failures; not calling Redis until it recovers");
      }
      Attempt at;
      at.number = number;
      Result<T> r = attempt_fn(at);
      const bool infra_failure = !r.ok() && r.error().retryable() && !at.redis_answered;
      breaker_.record(!infra_failure);
      if (!infra_failure) return r;
      if (number >= options_.retry.max_attempts || (!idempotent && at.maybe_executed)) return r;
      retries_.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(backoff(number));
      ++number;
    }
  }

  milliseconds backoff(std::uint32_t retry_number) {
    const auto& o = options_.retry;
    double d = static_cast<double>(o.base_backoff.count());
    for (std::uint32_t i = 1; i < retry_number && d < static_cast<double>(o.max_backoff.count()); ++i) d *= 2;
    d = std::min(d, static_cast<double>(o.max_backoff.count()));
    thread_local std::minstd_rand rng(std::random_device{}());
    std::uniform_real_distribution<double> u(0.0, 1.0);
    d = d * (1.0 - o.jitter) + d * o.jitter * u(rng);
    return milliseconds(static_cast<long long>(d));
  }

  // ---- routing and I/O --------------------------------------------------

  std::unique_ptr<Node> make_node(const RedisEndpoint& ep, bool via_sentinel) {
    auto node = std::make_unique<Node>();
    node->endpoint = ep;
    for (std::size_t i = 0; i < options_.pool_size; ++i) {
      rd::Channel::Connector connector;
      if (via_sentinel) {
        connector = [this] { return connect_via_sentinel(); };
      } else {
        connector = [this, ep] {
          return rd::Connection::connect(ep, tls_.get(), options_.connect_timeout, options_.command_timeout, handshake_,
                                         handshake_n_);
        };
      }
      node->channels.push_back(
          std::make_unique<rd::Channel>(std::move(connector), options_.command_timeout, &counters_));
    }
    return node;
  }

  Result<std::unique_ptr<rd::Connection>> connect_via_sentinel() {
    std::string last = "no sentinel answered";
    std::string sentinel_handshake;
    std::size_t sentinel_n = 0;
    if (!options_.sentinel_password.empty()) {
      rd::append_command(sentinel_handshake, {"AUTH", options_.sentinel_password});
      ++sentinel_n;
    }
    std::string query;
    rd::append_command(query, {"SENTINEL", "get-master-addr-by-name", options_.master_name});
    for (const RedisEndpoint& s : options_.endpoints) {
      Result<std::unique_ptr<rd::Connection>> sc = rd::Connection::connect(
          s, tls_.get(), options_.connect_timeout, options_.command_timeout, sentinel_handshake, sentinel_n);
      if (!sc) {
        last = sc.error().message();
        continue;
      }
      std::vector<ReplyPtr> replies;
      bool sent = false;
      if (Status st = (*sc)->roundtrip(query, 1, replies, rd::Clock::now() + options_.command_timeout, &sent); !st) {
        last = st.error().message();
        continue;
      }
      const redisReply* r = replies[0].get();
      long long port = 0;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !reply_int(r->element[1], port) || port <= 0 ||
          port > 65535) {
        last = "sentinel " + s.host + ":" + std::to_string(s.port) + " does not know master '" + options_.master_name +
               "'";
        continue;
      }
      RedisEndpoint master{std::string(reply_text(r->element[0])), static_cast<std::uint16_t>(port)};
      Result<std::unique_ptr<rd::Connection>> mc = rd::Connection::connect(
          master, tls_.get(), options_.connect_timeout, options_.command_timeout, handshake_, handshake_n_);
      if (!mc) return mc;
      // A sentinel may still name a demoted master during a failover.
      std::string role;
      rd::append_command(role, {"ROLE"});
      if (Status st = (*mc)->roundtrip(role, 1, replies, rd::Clock::now() + options_.command_timeout, &sent); !st) {
        return std::move(st).error();
      }
      const redisReply* rr = replies[0].get();
      if (rr->type != REDIS_REPLY_ARRAY || rr->elements < 1 || reply_text(rr->element[0]) != "master") {
        return map_error(Failure::kReset, "sentinel named " + master.host + ":" + std::to_string(master.port) +
                                              " as master but it is not (failover in progress)");
      }
      return mc;
    }
    return map_error(Failure::kRefused, "sentinel: " + last);
  }

  Node* node_for_address(std::string_view host, std::uint16_t port) {
    std::string id = std::string(host) + ":" + std::to_string(port);
    std::lock_guard lock(nodes_mutex_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) it = nodes_.emplace(id, make_node(RedisEndpoint{std::string(host), port}, false)).first;
    return it->second.get();
  }

  Status refresh_topology() {
    std::lock_guard refresh_lock(refresh_mutex_);
    std::vector<RedisEndpoint> candidates = options_.endpoints;
    {
      std::lock_guard lock(nodes_mutex_);
      for (auto& [id, n] : nodes_) candidates.push_back(n->endpoint);
    }
    std::string auth;
    std::size_t auth_n = 0;
    if (!options_.password.empty()) {
      if (options_.username.empty()) {
        rd::append_command(auth, {"AUTH", options_.password});
      } else {
        rd::append_command(auth, {"AUTH", options_.username, options_.password});
      }
      auth_n = 1;
    }
    std::string query;
    rd::append_command(query, {"CLUSTER", "SLOTS"});
    Error last(ErrorCode::kUnavailable, "redis: cluster: no seed node answered");
    for (const RedisEndpoint& ep : candidates) {
      Result<std::unique_ptr<rd::Connection>> c =
          rd::Connection::connect(ep, tls_.get(), options_.connect_timeout, options_.command_timeout, auth, auth_n);
      if (!c) {
        last = std::move(c).error();
        continue;
      }
      std::vector<ReplyPtr> replies;
      bool sent = false;
      if (Status st = (*c)->roundtrip(query, 1, replies, rd::Clock::now() + options_.command_timeout, &sent); !st) {
        last = std::move(st).error();
        continue;
      }
      const redisReply* r = replies[0].get();
      if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        last = bad_reply("CLUSTER SLOTS from " + ep.host + ":" + std::to_string(ep.port));
        continue;
      }
      std::array<Node*, kSlots> table{};
      std::vector<Node*> masters;
      bool ok = true;
      for (std::size_t i = 0; i < r->elements && ok; ++i) {
        const redisReply* e = r->element[i];
        long long lo = 0;
        long long hi = 0;
        long long port = 0;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !reply_int(e->element[0], lo) ||
            !reply_int(e->element[1], hi) || lo < 0 || hi >= static_cast<long long>(kSlots) || lo > hi ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            !reply_int(e->element[2]->element[1], port) || port <= 0 || port > 65535) {
          ok = false;
          break;
        }
        std::string_view host = reply_text(e->element[2]->element[0]);
        Node* n = node_for_address(host.empty() ? std::string_view(ep.host) : host, static_cast<std::uint16_t>(port));
        if (std::find(masters.begin(), masters.end(), n) == masters.end()) masters.push_back(n);
        for (long long s = lo; s <= hi; ++s) table[static_cast<std::size_t>(s)] = n;
      }
      if (!ok) {
        last = bad_reply("CLUSTER SLOTS entry");
        continue;
      }
      std::sort(masters.begin(), masters.end(), [](const Node* a, const Node* b) {
        return std::tie(a->endpoint.host, a->endpoint.port) < std::tie(b->endpoint.host, b->endpoint.port);
      });
      std::unique_lock lock(slots_mutex_);
      slot_table_ = table;
      masters_ = std::move(masters);
      refresh_needed_ = false;
      last_refresh_ = std::chrono::steady_clock::now();
      return {};
    }
    return last;
  }

  Result<Node*> route(std::string_view key) {
    if (single_) return single_.get();
    const std::size_t slot = key_slot(key);
    {
      std::shared_lock lock(slots_mutex_);
      Node* n = slot_table_[slot];
      const bool stale = refresh_needed_ && std::chrono::steady_clock::now() - last_refresh_ > milliseconds(100);
      if (n != nullptr && !stale) return n;
    }
    if (Status st = refresh_topology(); !st) {
      std::shared_lock lock(slots_mutex_);
      if (slot_table_[slot] != nullptr) return slot_table_[slot];  // use the old map
      return std::move(st).error();
    }
    std::shared_lock lock(slots_mutex_);
    if (slot_table_[slot] == nullptr) return map_error(Failure::kServerReply, "CLUSTERDOWN slot not served");
    return slot_table_[slot];
  }

  Result<std::vector<Node*>> scan_nodes() {
    if (single_) return std::vector<Node*>{single_.get()};
    {
      std::shared_lock lock(slots_mutex_);
      if (!masters_.empty()) return masters_;
    }
    if (Status st = refresh_topology(); !st) return std::move(st).error();
    std::shared_lock lock(slots_mutex_);
    return masters_;
  }

  void append_call(std::string& out, std::size_t& n, const Call& c) {
    if (c.asking) {
      rd::append_command(out, {"ASKING"});
      ++n;
    }
    if (c.script == nullptr) {
      rd::append_command(out, c.args);
    } else {
      std::vector<std::string_view> argv;
      argv.reserve(c.args.size() + 4);
      argv.push_back(c.use_eval ? "EVAL" : "EVALSHA");
      argv.push_back(c.use_eval ? c.script->body : std::string_view(c.script->sha));
      argv.push_back("1");
      argv.push_back(c.key);
      argv.insert(argv.end(), c.args.begin(), c.args.end());
      rd::append_command(out, argv);
    }
    ++n;
    if (c.wait) {
      rd::append_command(out, {"WAIT", wait_replicas_text_, wait_timeout_text_});
      ++n;
    }
  }

  // run() sends every call (grouped per node, one round trip per node) and
  // follows NOSCRIPT, MOVED and ASK. Error replies other than those are
  // returned as replies. A transport failure fails the whole run.
  Status run(std::vector<Call>& calls, std::vector<CallReply>& out, Attempt& at) {
    out.clear();
    out.resize(calls.size());
    std::vector<std::size_t> todo(calls.size());
    for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    for (int round = 0; !todo.empty(); ++round) {
      if (round == 6) return map_error(Failure::kUnexpected, "too many redirections (cluster resharding?)");
      std::vector<std::pair<Node*, std::vector<std::size_t>>> groups;
      for (std::size_t i : todo) {
        Call& c = calls[i];
        if (c.node == nullptr) {
          Result<Node*> n = route(c.key);
          if (!n) return std::move(n).error();
          c.node = *n;
        }
        auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& p) { return p.first == c.node; });
        if (g == groups.end()) {
          groups.emplace_back(c.node, std::vector<std::size_t>{});
          g = groups.end() - 1;
        }
        g->second.push_back(i);
      }
      std::vector<std::size_t> next;
      for (auto& [node, idx] : groups) {
        std::string buffer;
        std::size_t n = 0;
        for (std::size_t i : idx) append_call(buffer, n, calls[i]);
        std::vector<ReplyPtr> replies;
        rd::IoError io;
        if (!node->pick().execute(buffer, n, replies, io)) {
          at.maybe_executed = at.maybe_executed || io.maybe_executed;
          return std::move(io.error);
        }
        at.maybe_executed = true;
        std::size_t pos = 0;
        for (std::size_t i : idx) {
          Call& c = calls[i];
          if (c.asking) ++pos;  // +OK of ASKING
          c.asking = false;
          ReplyPtr main = std::move(replies[pos++]);
          ReplyPtr wait;
          if (c.wait) wait = std::move(replies[pos++]);
          if (main->type == REDIS_REPLY_ERROR) {
            const std::string_view text = reply_text(main.get());
            if (text.starts_with("NOSCRIPT") && c.script != nullptr && !c.use_eval) {
              c.use_eval = true;
              next.push_back(i);
              continue;
            }
            if (text.starts_with("MOVED ") || text.starts_with("ASK ")) {
              Node* target = redirect_target(text);
              if (target == nullptr) return bad_reply(text);
              redirects_.fetch_add(1, std::memory_order_relaxed);
              c.node = target;
              c.asking = text.starts_with("ASK ");
              next.push_back(i);
              continue;
            }
            if (text.starts_with("READONLY")) node->reset();  // demoted master: reconnect via Sentinel
          }
          out[i].main = std::move(main);
          out[i].wait = std::move(wait);
        }
      }
      todo = std::move(next);
    }
    return {};
  }

  // "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
  Node* redirect_target(std::string_view text) {
    const bool moved = text.starts_with("MOVED ");
    std::string_view rest = text.substr(text.find(' ') + 1);
    const auto sp = rest.find(' ');
    if (sp == std::string_view::npos) return nullptr;
    long long slot = 0;
    if (!text_int(rest.substr(0, sp), slot) || slot < 0 || slot >= static_cast<long long>(kSlots)) return nullptr;
    std::string_view addr = rest.substr(sp + 1);
    const auto colon = addr.rfind(':');
    long long port = 0;
    if (colon == std::string_view::npos || !text_int(addr.substr(colon + 1), port) || port <= 0 || port > 65535) {
      return nullptr;
    }
    std::string_view host = addr.substr(0, colon);
    if (host.empty()) host = options_.endpoints.front().host;
    Node* n = node_for_address(host, static_cast<std::uint16_t>(port));
    if (moved && !single_) {
      std::unique_lock lock(slots_mutex_);
      slot_table_[static_cast<std::size_t>(slot)] = n;
      refresh_needed_ = true;  // other slots probably moved too
    }
    return n;
  }

  Result<std::string> plain_on(Node* node, std::vector<std::string_view> args) {
    return resilient<std::string>(true, [&](Attempt& at) -> Result<std::string> {
      std::vector<Call> calls(1);
      calls[0].node = node;
      calls[0].args = args;
      std::vector<CallReply> replies;
      if (Status st = run(calls, replies, at); !st) return std::move(st).error();
      const redisReply* r = replies[0].main.get();
      if (Status st = reply_error(r, at); !st) return std::move(st).error();
      return std::string(reply_text(r));
    });
  }

  // Cursor: "<node index>:<SCAN cursor>[:<keys of that SCAN batch already
  // returned>]". SCAN's COUNT is only a hint, so a batch larger than the
  // page is split by re-issuing the same SCAN call and skipping.
  Result<ScanPage> scan_once(const ScanOptions& options, Attempt& at) {
    Result<std::vector<Node*>> nodes = scan_nodes();
    if (!nodes) return std::move(nodes).error();
    std::size_t node_index = 0;
    std::string cursor = "0";
    std::optional<std::string> resume_after;  // the last key already returned from this batch
    if (!options.cursor.empty()) {
      const std::vector<std::string_view> parts = [&] {
        std::vector<std::string_view> out;
        std::string_view rest = options.cursor;
        for (;;) {
          const auto pos = rest.find(':');
          out.push_back(rest.substr(0, pos));
          if (pos == std::string_view::npos) return out;
          rest.remove_prefix(pos + 1);
        }
      }();
      long long ni = 0;
      long long rc = 0;
      if (parts.size() == 3) resume_after = hex_decode(parts[2]);
      if (parts.size() < 2 || parts.size() > 3 || !text_int(parts[0], ni) || ni < 0 || !text_int(parts[1], rc) ||
          (parts.size() == 3 && !resume_after)) {
        return Error(ErrorCode::kInvalidArgument, "redis: bad scan cursor '" + options.cursor + "'");
      }
      node_index = static_cast<std::size_t>(ni);
      cursor = std::string(parts[1]);
    }
    ScanPage page;
    if (node_index >= nodes->size()) return page;
    const std::size_t limit = std::max<std::size_t>(options.limit, 1);
    const std::string match = glob_escape(options.prefix) + "*";
    std::vector<Call> scan_call(1);
    scan_call[0].node = (*nodes)[node_index];
    scan_call[0].args = {"SCAN", cursor, "MATCH", match, "COUNT", std::string(kScanCount), "TYPE", "string"};
    std::vector<CallReply> replies;
    if (Status st = run(scan_call, replies, at); !st) return std::move(st).error();
    const redisReply* r = replies[0].main.get();
    if (Status st = reply_error(r, at); !st) return std::move(st).error();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
      return bad_reply("SCAN");
    }
    const std::string next(reply_text(r->element[0]));
    if (next == "0") {
      page.next_cursor = node_index + 1 < nodes->size() ? std::to_string(node_index + 1) + ":0" : "";
    } else {
      page.next_cursor = std::to_string(node_index) + ":" + next;
    }
    const redisReply* keys = r->element[1];
    std::vector<std::string> names;
    for (std::size_t i = 0; i < keys->elements; ++i) names.emplace_back(reply_text(keys->element[i]));
    // A batch is walked in key order, so a page that ends inside it can be
    // resumed by repeating the SCAN and skipping every key up to the last one
    // returned. Positions would not do: Redis's background rehashing may
    // return the same batch in another order.
    std::sort(names.begin(), names.end());
    if (resume_after) {
      names.erase(names.begin(), std::upper_bound(names.begin(), names.end(), *resume_after));
    }
    if (names.empty()) return page;
    std::vector<Call> gets(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      gets[i].script = script(5);
      gets[i].key = names[i];
    }
    std::vector<CallReply> got;
    if (Status st = run(gets, got, at); !st) return std::move(st).error();
    const auto now = std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (page.records.size() == limit) {
        page.next_cursor =
            std::to_string(node_index) + ":" + cursor + ":" + hex_encode(page.records.back().idempotency_key);
        break;
      }
      const redisReply* g = got[i].main.get();
      if (g->type == REDIS_REPLY_ERROR) continue;  // e.g. a foreign value changed under us
      Attempt ignore;
      Result<std::optional<IdempotencyRecord>> rec = parse_get(names[i], g, ignore);
      if (!rec || !rec->has_value()) continue;  // expired since SCAN, or not one of ours
      IdempotencyRecord& rv = **rec;
      if (options.status && rv.status != *options.status) continue;
      if (options.older_than.count() > 0 && rv.first_seen_at > now - options.older_than) continue;
      page.records.push_back(std::move(rv));
    }
    return page;
  }

  RedisStoreOptions options_;
  std::shared_ptr<rd::TlsContext> tls_;
  CircuitBreaker breaker_;
  std::array<Script, 6> scripts_;
  std::string handshake_;
  std::size_t handshake_n_ = 0;
  std::string db_text_;
  std::string wait_replicas_text_ = to_dec(options_.wait_replicas);
  std::string wait_timeout_text_ = to_dec(options_.wait_timeout.count());

  mutable rd::ChannelCounters counters_;
  std::atomic<std::uint64_t> retries_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> redirects_{0};

  std::unique_ptr<Node> single_;  // standalone and Sentinel

  // Cluster
  std::mutex nodes_mutex_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::mutex refresh_mutex_;
  std::shared_mutex slots_mutex_;
  std::array<Node*, kSlots> slot_table_{};
  std::vector<Node*> masters_;
  bool refresh_needed_ = false;
  std::chrono::steady_clock::time_point last_refresh_{};
};

}  // namespace

Result<std::shared_ptr<Store>> RedisStore::create(RedisStoreOptions options) {
  if (Status st = options.validate(); !st) return std::move(st).error();
  std::shared_ptr<redis_detail::TlsContext> tls;
  if (options.tls.enabled) {
    Result<std::shared_ptr<redis_detail::TlsContext>> ctx = redis_detail::TlsContext::create(options.tls);
    if (!ctx) return std::move(ctx).error();
    tls = std::move(*ctx);
  }
  return std::shared_ptr<Store>(std::make_shared<RedisStoreImpl>(std::move(options), std::move(tls)));
}

Result<std::shared_ptr<Store>> RedisStore::open(std::string_view url) {
  Result<RedisStoreOptions> opt = parse_url(url);
  if (!opt) return std::move(opt).error();
  return create(std::move(*opt));
}

std::optional<RedisClientStats> RedisStore::client_stats(const Store& store) {
  const auto* impl = dynamic_cast<const RedisStoreImpl*>(&store);
  if (impl == nullptr) return std::nullopt;
  return impl->client_stats();
}

}  // namespace idem
