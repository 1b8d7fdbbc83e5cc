// Reads and administration: get, remove, scan pages, and plain commands on a
// node (PING, INFO) for ping() and stats().
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "stores/redis/json_layout.h"
#include "stores/redis/record_codec.h"
#include "stores/redis/redis_store.h"
#include "stores/redis/replies.h"

namespace idem::redis_detail {
namespace {

// SCAN's COUNT stays the same for every call, whatever the page size: a page
// that ends inside a batch is resumed by repeating the same SCAN cursor, and
// only the same COUNT gives back the same batch.
constexpr std::string_view kScanCount = "128";

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

std::string glob_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

class GetOp final
    : public Operation<std::optional<IdempotencyRecord>, ResultCallback<std::optional<IdempotencyRecord>>> {
 public:
  GetOp(const OpContext& ctx, std::string_view key, ScriptId script,
        ResultCallback<std::optional<IdempotencyRecord>> done, bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/true, sync), key_(key), script_(script) {}

 private:
  void prepare() override {
    calls_.resize(1);
    calls_[0].fresh();
    calls_[0].script = script_;
    calls_[0].key = key_;
  }
  std::optional<Result<std::optional<IdempotencyRecord>>> interpret() override {
    return read_get_reply(key_, calls_[0].reply.get(), maybe_executed_, legacy_policy(core_.options()));
  }

  std::string key_;
  ScriptId script_;
};

class RemoveOp final : public Operation<bool, ResultCallback<bool>> {
 public:
  RemoveOp(const OpContext& ctx, std::string_view key, ResultCallback<bool> done, bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/true, sync), key_(key) {}

 private:
  void prepare() override {
    calls_.resize(1);
    Call& c = calls_[0];
    c.fresh();
    c.key = key_;
    c.args.clear();
    c.args.add("DEL");
    c.args.add(key_);
  }
  std::optional<Result<bool>> interpret() override {
    const redisReply* r = calls_[0].reply.get();
    if (Status st = reply_status(r, maybe_executed_); !st) return Result<bool>(std::move(st).error());
    long long n = 0;
    if (!reply_int(r, n)) return Result<bool>(bad_reply("DEL"));
    return Result<bool>(n > 0);
  }

  std::string key_;
};

// CommandOp runs one plain command on a given node and returns the reply's
// text (PING, INFO).
class CommandOp final : public Operation<std::string, ResultCallback<std::string>> {
 public:
  CommandOp(const OpContext& ctx, Node* node, std::vector<std::string> args, ResultCallback<std::string> done,
            bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/true, sync), node_(node), args_(std::move(args)) {}

 private:
  void prepare() override {
    calls_.resize(1);
    Call& c = calls_[0];
    c.fresh();
    c.node = node_;
    c.args.clear();
    for (const std::string& a : args_) c.args.add(a);
  }
  std::optional<Result<std::string>> interpret() override {
    const redisReply* r = calls_[0].reply.get();
    if (Status st = reply_status(r, maybe_executed_); !st) return Result<std::string>(std::move(st).error());
    return Result<std::string>(std::string(reply_text(r)));
  }

  Node* node_;
  std::vector<std::string> args_;
};

// ScanPageOp: one SCAN on one node, then the records of the keys it named
// (one get script each, in one round trip).
//
// Cursor: "<node index>:<SCAN cursor>[:<hex of the last key of that SCAN
// batch already returned>]". SCAN's COUNT is only a hint, so a batch larger
// than the page is split by re-issuing the same SCAN call and skipping.
class ScanPageOp final : public Operation<ScanPage, ResultCallback<ScanPage>> {
 public:
  ScanPageOp(const OpContext& ctx, std::vector<Node*> nodes, std::size_t node_index, std::string cursor,
             std::optional<std::string> resume_after, const ScanOptions& options, ResultCallback<ScanPage> done,
             bool sync)
      : Operation(ctx, std::move(done), /*idempotent=*/true, sync),
        nodes_(std::move(nodes)),
        node_index_(node_index),
        cursor_(std::move(cursor)),
        resume_after_(std::move(resume_after)),
        status_(options.status),
        older_than_(options.older_than),
        limit_(std::max<std::size_t>(options.limit, 1)),
        match_(glob_escape(options.prefix) + "*") {}

 private:
  void prepare() override {
    reading_records_ = false;
    page_ = ScanPage{};
    calls_.resize(1);
    Call& c = calls_[0];
    c.fresh();
    c.key = {};
    c.script.reset();
    c.node = nodes_[node_index_];
    c.args.clear();
    for (std::string_view a :
         {std::string_view("SCAN"), std::string_view(cursor_), std::string_view("MATCH"), std::string_view(match_),
          std::string_view("COUNT"), kScanCount, std::string_view("TYPE"), std::string_view("string")}) {
      c.args.add(a);
    }
  }

  std::optional<Result<ScanPage>> interpret() override {
    if (!reading_records_) return read_scan();
    return read_records();
  }

  std::optional<Result<ScanPage>> read_scan() {
    const redisReply* r = calls_[0].reply.get();
    if (Status st = reply_status(r, maybe_executed_); !st) return Result<ScanPage>(std::move(st).error());
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
      return Result<ScanPage>(bad_reply("SCAN"));
    }
    const std::string next(reply_text(r->element[0]));
    if (next == "0") {
      page_.next_cursor = node_index_ + 1 < nodes_.size() ? std::to_string(node_index_ + 1) + ":0" : "";
    } else {
      page_.next_cursor = std::to_string(node_index_) + ":" + next;
    }
    const redisReply* keys = r->element[1];
    names_.clear();
    for (std::size_t i = 0; i < keys->elements; ++i) names_.emplace_back(reply_text(keys->element[i]));
    // A batch is walked in key order, so a page that ends inside it can be
    // resumed by repeating the SCAN and skipping every key up to the last one
    // returned. Positions would not do: Redis's background rehashing may
    // return the same batch in another order.
    std::sort(names_.begin(), names_.end());
    if (resume_after_) names_.erase(names_.begin(), std::upper_bound(names_.begin(), names_.end(), *resume_after_));
    if (names_.empty()) return Result<ScanPage>(std::move(page_));
    calls_.clear();
    calls_.resize(names_.size());
    for (std::size_t i = 0; i < names_.size(); ++i) {
      calls_[i].script = kGet;
      calls_[i].key = names_[i];
    }
    reading_records_ = true;
    return std::nullopt;
  }

  Result<ScanPage> read_records() {
    const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (page_.records.size() == limit_) {
        page_.next_cursor =
            std::to_string(node_index_) + ":" + cursor_ + ":" + hex_encode(page_.records.back().idempotency_key);
        break;
      }
      const redisReply* g = calls_[i].reply.get();
      if (g->type == REDIS_REPLY_ERROR) continue;  // e.g. a foreign value changed under us
      bool ignore = false;
      Result<std::optional<IdempotencyRecord>> rec =
          read_get_reply(names_[i], g, ignore, legacy_policy(core_.options()));
      if (!rec || !rec->has_value()) continue;  // expired since SCAN, or not one of ours
      IdempotencyRecord& rv = **rec;
      if (status_ && rv.status != *status_) continue;
      if (older_than_.count() > 0 && rv.first_seen_at > now - older_than_) continue;
      page_.records.push_back(std::move(rv));
    }
    return std::move(page_);
  }

  std::vector<Node*> nodes_;
  std::size_t node_index_;
  std::string cursor_;
  std::optional<std::string> resume_after_;
  std::optional<ProcessingStatus> status_;
  std::chrono::milliseconds older_than_;
  std::size_t limit_;
  std::string match_;
  bool reading_records_ = false;
  std::vector<std::string> names_;
  ScanPage page_;
};

}  // namespace

void RedisStoreImpl::start_get(std::string_view key, ScriptId script,
                               ResultCallback<std::optional<IdempotencyRecord>> done, bool sync) {
  if (Status st = check_key(key); !st) {
    deliver(done, Result<std::optional<IdempotencyRecord>>(std::move(st).error()));
    return;
  }
  (new GetOp(context(), key, script, std::move(done), sync))->start();
}

void RedisStoreImpl::start_remove(std::string_view key, ResultCallback<bool> done, bool sync) {
  if (Status st = check_key(key); !st) {
    deliver(done, Result<bool>(std::move(st).error()));
    return;
  }
  (new RemoveOp(context(), key, std::move(done), sync))->start();
}

void RedisStoreImpl::start_command(Node* node, std::vector<std::string> args, ResultCallback<std::string> done,
                                   bool sync) {
  (new CommandOp(context(), node, std::move(args), std::move(done), sync))->start();
}

void RedisStoreImpl::start_scan_page(const ScanOptions& options, ResultCallback<ScanPage> done, bool sync) {
  Result<std::vector<Node*>> nodes = masters_blocking();
  if (!nodes) {
    deliver(done, Result<ScanPage>(std::move(nodes).error()));
    return;
  }
  std::size_t node_index = 0;
  std::string cursor = "0";
  std::optional<std::string> resume_after;
  if (!options.cursor.empty()) {
    std::vector<std::string_view> parts;
    std::string_view rest = options.cursor;
    for (;;) {
      const auto pos = rest.find(':');
      parts.push_back(rest.substr(0, pos));
      if (pos == std::string_view::npos) break;
      rest.remove_prefix(pos + 1);
    }
    long long ni = 0;
    long long rc = 0;
    if (parts.size() == 3) resume_after = hex_decode(parts[2]);
    if (parts.size() < 2 || parts.size() > 3 || !text_int(parts[0], ni) || ni < 0 || !text_int(parts[1], rc) ||
        (parts.size() == 3 && !resume_after)) {
      deliver(done,
              Result<ScanPage>(Error(ErrorCode::kInvalidArgument, "redis: bad scan cursor '" + options.cursor + "'")));
      return;
    }
    node_index = static_cast<std::size_t>(ni);
    cursor = std::string(parts[1]);
  }
  if (node_index >= nodes->size()) {
    deliver(done, Result<ScanPage>(ScanPage{}));
    return;
  }
  (new ScanPageOp(context(), std::move(*nodes), node_index, std::move(cursor), std::move(resume_after), options,
                  std::move(done), sync))
      ->start();
}

// scan() keeps calling SCAN (each call is short on the server) until the page
// is full or the keyspace is done, within a bound, so that a sparse match or
// an empty cluster node does not hand back empty pages.
Result<ScanPage> RedisStoreImpl::scan(const ScanOptions& options) {
  ScanOptions step = options;
  const std::size_t limit = std::max<std::size_t>(options.limit, 1);
  ScanPage out;
  for (int calls = 0; calls < 64; ++calls) {
    step.limit = limit - out.records.size();
    Result<ScanPage> page =
        run_sync<ScanPage>([&](ResultCallback<ScanPage> done) { start_scan_page(step, std::move(done), true); });
    if (!page) return std::move(page).error();
    for (IdempotencyRecord& r : page->records) out.records.push_back(std::move(r));
    out.next_cursor = std::move(page->next_cursor);
    if (out.records.size() >= limit || out.next_cursor.empty()) break;
    step.cursor = out.next_cursor;
  }
  return out;
}

Result<StoreStats> RedisStoreImpl::stats() {
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
  Result<std::vector<Node*>> nodes = masters_blocking();
  if (!nodes) return std::move(nodes).error();
  std::uint64_t bytes = 0;
  for (Node* n : *nodes) {
    Result<std::string> info = run_sync<std::string>([&](ResultCallback<std::string> done) {
      start_command(n, {"INFO", "memory"}, std::move(done), true);
    });
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

Status RedisStoreImpl::ping() {
  Result<std::vector<Node*>> nodes = masters_blocking();
  if (!nodes) return std::move(nodes).error();
  for (Node* n : *nodes) {
    Result<std::string> r = run_sync<std::string>(
        [&](ResultCallback<std::string> done) { start_command(n, {"PING"}, std::move(done), true); });
    if (!r) return std::move(r).error();
  }
  return {};
}

}  // namespace idem::redis_detail
