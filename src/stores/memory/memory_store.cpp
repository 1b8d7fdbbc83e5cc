// File: src/stores/memory/memory_store.cpp
//
// MemoryStore: the state machine of SPEC §2 over sharded hash tables.
//
// Design notes (why, not what):
// - Each shard has its own mutex and table, so threads touching different keys
//   never contend; a key always maps to the same shard, so every per-key
//   invariant only needs that shard's lock.
// - Fencing tokens come from a per-shard counter that only ever grows, and
//   never from the record itself: a record can be removed or expire and the
//   key be claimed again, yet the new token is still above every token the
//   key ever had (same shard, same counter). The shard index is folded into
//   the low bits so tokens are also unique store-wide, which helps debugging
//   and costs nothing.
// - A record is one allocation (node + inline key), turned into an
//   IdempotencyRecord only when a caller needs one, so the claim+complete hot
//   path allocates just the node and the result.
// - Expiry is lazy (an expired record is treated as absent when touched) plus
//   amortized: each insert inspects two slots of its shard's table,
//   round-robin, and drops what has expired there, so memory stays bounded by
//   what is live plus what expired within about one pass over the table,
//   without a sweeper thread.
// - wait_settled() sleeps on its shard's condition variable; every verdict,
//   removal and expiry in the shard wakes it, but only when someone waits
//   (a counter under the shard lock), so the hot path pays one branch.
// - Deadlines are saturating sums (limits.h) of durations checked by
//   validate_*_request(): no `now + ttl` can overflow.
// - Named stores (memory://name) live in a process-wide registry of weak
//   pointers: the same store for every opener while anyone holds it.
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/url_query.h"
#include "idem/stores/memory.h"

namespace idem {
namespace {

using std::chrono::milliseconds;

// Rarely used fields live behind a pointer so that the common record (claim,
// complete) stays small: fewer cache lines to fill on the hot path.
struct Cold {
  std::optional<std::string> error;
  std::optional<Checkpoint> checkpoint;
};

// InlineFingerprint keeps a payload fingerprint inside the record: the
// checker's are 32 hex characters, one heap allocation per record less than
// a std::string (whose small buffer holds 15). Longer ones (from other
// callers of the store API) go to the heap.
class InlineFingerprint {
 public:
  void assign(std::string_view text) {
    if (text.size() <= kInline) {
      if (!text.empty()) std::memcpy(inline_.data(), text.data(), text.size());
      size_ = static_cast<std::uint8_t>(text.size());
      heap_.reset();
    } else {
      heap_ = std::make_unique<std::string>(text);
      size_ = 0;
    }
  }
  std::string_view view() const noexcept {
    return heap_ ? std::string_view(*heap_) : std::string_view(inline_.data(), size_);
  }
  std::size_t heap_bytes() const noexcept { return heap_ ? sizeof(std::string) + heap_->capacity() + 1 : 0; }

 private:
  static constexpr std::size_t kInline = 32;
  std::array<char, kInline> inline_{};
  std::uint8_t size_ = 0;
  std::unique_ptr<std::string> heap_;
};

struct Entry {
  std::string event_id;
  std::string event_type;
  InlineFingerprint fingerprint;
  std::optional<std::string> result;
  std::unique_ptr<Cold> cold;
  Timestamp first_seen_at{};
  Timestamp lease_expires_at{};
  std::optional<Timestamp> completed_at;
  Token token = 0;
  std::uint32_t attempt = 0;
  ProcessingStatus status = ProcessingStatus::kProcessing;
  bool retryable = true;

  Cold& cold_part() {
    if (!cold) cold = std::make_unique<Cold>();
    return *cold;
  }
};

// Node is one record with its key stored inline right after it: one
// allocation, and one cache miss fewer when an expired record is freed.
class Node {
 public:
  static Node* make(std::string_view key) {
    void* memory = ::operator new(sizeof(Node) + key.size());
    Node* node = new (memory) Node(key.size());
    if (!key.empty()) std::memcpy(node->key_bytes(), key.data(), key.size());
    return node;
  }
  static void destroy(Node* node) noexcept {
    if (node == nullptr) return;
    node->~Node();
    ::operator delete(node);
  }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  std::string_view key() const noexcept { return {reinterpret_cast<const char*>(this + 1), key_size_}; }
  std::size_t key_size() const noexcept { return key_size_; }

  Entry e;

 private:
  explicit Node(std::size_t key_size) noexcept : key_size_(key_size) {}
  ~Node() = default;
  char* key_bytes() noexcept { return reinterpret_cast<char*>(this + 1); }

  std::size_t key_size_;
};

std::size_t hash_key(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }

// Table is an open-addressing hash table (linear probing, power-of-two
// capacity, backward-shift deletion) of node pointers with each key's hash
// and the record's expiry kept next to the pointer. std::unordered_map was
// measurably slower here (docs/benchmarks-stores.md): a prime-modulo division
// per probe, and rehashing and sweeping walked every node through cache
// misses. Here
// probes, rehashes and the amortized sweep only read the slot array; a node
// is touched only when its full hash matches or it has expired.
class Table {
 public:
  Table() : slots_(16), mask_(15) {}
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
  ~Table() {
    for (Slot& s : slots_) Node::destroy(s.node);
  }

  struct Slot {
    std::size_t hash = 0;
    Timestamp expires_at{};
    Node* node = nullptr;

    bool expired(Timestamp now) const noexcept { return expires_at <= now; }
  };

  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_.size(); }
  // Slot pointers stay valid until the next insert or erase.
  Slot& at(std::size_t i) noexcept { return slots_[i]; }
  std::size_t index_of(const Slot& s) const noexcept { return static_cast<std::size_t>(&s - slots_.data()); }

  Slot* find(std::string_view key, std::size_t hash) noexcept {
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.node == nullptr) return nullptr;
      if (s.hash == hash && s.node->key() == key) return &s;
    }
  }

  // insert() adds a node for a key known to be absent.
  Slot& insert(std::string_view key, std::size_t hash) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    Node* node = Node::make(key);
    std::size_t i = hash & mask_;
    while (slots_[i].node != nullptr) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, Timestamp{}, node};
    ++size_;
    return slots_[i];
  }

  // erase_at() deletes the node in slot i and closes the gap, so lookups
  // never need tombstones. Later entries of the cluster may move down into
  // slot i: callers iterating must look at slot i again.
  void erase_at(std::size_t i) noexcept {
    Node::destroy(slots_[i].node);
    slots_[i] = Slot{};
    --size_;
    for (std::size_t j = (i + 1) & mask_; slots_[j].node != nullptr; j = (j + 1) & mask_) {
      const std::size_t home = slots_[j].hash & mask_;
      // Leave the entry at j when its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      slots_[j] = Slot{};
      i = j;
    }
  }

 private:
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.node == nullptr) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].node != nullptr) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_;
  std::size_t size_ = 0;
};

// alignas keeps two shards' mutexes off one cache line.
struct alignas(64) Shard {
  std::mutex mutex;
  Table table;
  std::uint64_t counter = 0;   // tokens handed out so far, never decreases
  std::size_t sweep_slot = 0;  // next slot the amortized sweep inspects
  // wait_settled() callers of this shard sleep here; `waiters` (guarded by
  // `mutex`) lets writers skip the notify when nobody waits.
  std::condition_variable settled;
  std::size_t waiters = 0;

  void notify_settled() {
    if (waiters != 0) settled.notify_all();
  }
};

using Slot = Table::Slot;

IdempotencyRecord to_record(const Slot& slot) {
  const Node& n = *slot.node;
  const Entry& e = n.e;
  IdempotencyRecord r;
  r.idempotency_key = n.key();
  r.event_id = e.event_id;
  r.event_type = e.event_type;
  r.status = e.status;
  r.result = e.result;
  if (e.cold) {
    r.error = e.cold->error;
    r.checkpoint = e.cold->checkpoint;
  }
  r.retryable = e.retryable;
  r.first_seen_at = e.first_seen_at;
  r.completed_at = e.completed_at;
  r.attempt = e.attempt;
  r.token = e.token;
  r.lease_expires_at = e.lease_expires_at;
  r.fingerprint = std::string(e.fingerprint.view());
  r.expires_at = slot.expires_at;
  return r;
}

bool fingerprint_mismatch(std::string_view stored, std::string_view requested) noexcept {
  return !stored.empty() && !requested.empty() && stored != requested;
}

Error lease_lost(std::string_view key, const char* why) {
  std::string msg = "memory store: lease lost on key '";
  msg.append(key);
  msg += "': ";
  msg += why;
  msg += "; another worker owns the key now, do not retry";
  return Error(ErrorCode::kLeaseLost, std::move(msg));
}

std::size_t round_up_pow2(std::size_t n) {
  std::size_t p = 1;
  while (p < n && p < (std::size_t{1} << 16)) p <<= 1;
  return p;
}

class MemoryStoreImpl final : public Store {
 public:
  explicit MemoryStoreImpl(MemoryStoreOptions options)
      : clock_(options.clock ? std::move(options.clock) : system_clock()),
        shard_count_(round_up_pow2(options.shards == 0 ? 1 : options.shards)),
        shards_(new Shard[shard_count_]),
        max_records_(options.max_records),
        // Bounded so that a wait on the condition variable can never
        // overflow the steady clock.
        wait_poll_interval_(std::clamp(options.wait_poll_interval, milliseconds(1), kMaxLease)) {
    while ((std::size_t{1} << shard_bits_) < shard_count_) ++shard_bits_;
  }

  std::string_view kind() const noexcept override { return "memory"; }

  Result<ClaimOutcome> claim(const ClaimRequest& req) override {
    if (Status valid = validate_claim_request(req); !valid) return std::move(valid).error();
    const std::size_t hash = hash_key(req.key);
    const std::size_t index = shard_index(hash);
    Shard& shard = shards_[index];
    bool swept_all = false;
    for (;;) {
      const Timestamp now = clock_->now();
      std::unique_lock lock(shard.mutex);
      Slot* slot = shard.table.find(req.key, hash);
      if (slot != nullptr && !slot->expired(now)) return claim_existing(shard, index, *slot, req, now);
      if (slot == nullptr) {
        if (!reserve_slot()) {
          // Full: drop expired records everywhere, then try once more. The
          // shard lock is released first so that sweeping other shards can
          // never deadlock with a thread doing the same from another shard.
          lock.unlock();
          if (swept_all) {
            return Error(ErrorCode::kResourceExhausted,
                         "memory store: max_records (" + std::to_string(max_records_) +
                             ") live records reached; raise max_records, shorten ttl, or use a durable store");
          }
          (void)sweep();
          swept_all = true;
          continue;
        }
        amortized_sweep(shard, now);
        slot = &shard.table.insert(req.key, hash);
      }
      // Absent, or expired (a fresh life of the key: nothing carries over).
      Entry& e = slot->node->e;
      e.event_id.assign(req.event_id);
      e.event_type.assign(req.event_type);
      e.status = ProcessingStatus::kProcessing;
      e.retryable = true;
      e.attempt = 1;
      e.first_seen_at = now;
      e.completed_at.reset();
      e.result.reset();
      e.cold.reset();
      e.fingerprint.assign(req.fingerprint);
      return acquire(shard, index, *slot, req, now, AcquireKind::kNew);
    }
  }

  Status complete(const CompleteRequest& req) override {
    if (Status valid = validate_complete_request(req); !valid) return valid;
    return finish(req.key, req.token, req.ttl, [&](Entry& e) {
      e.status = ProcessingStatus::kCompleted;
      e.result.emplace(req.result);
      if (e.cold) e.cold->error.reset();
    });
  }

  Status fail(const FailRequest& req) override {
    if (Status valid = validate_fail_request(req); !valid) return valid;
    return finish(req.key, req.token, req.ttl, [&](Entry& e) {
      e.status = ProcessingStatus::kFailed;
      e.cold_part().error.emplace(req.error);
      e.result.reset();
      e.retryable = req.retryable;
    });
  }

  // finish() is the verdict shared by complete() and fail(): only the owner
  // of a live lease may write it, and it restarts the record's TTL.
  template <typename Verdict>
  Status finish(std::string_view key, Token token, std::chrono::milliseconds ttl, Verdict&& verdict) {
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    Slot* slot = owned(shard, key, hash, token, now);
    if (slot == nullptr) return lease_lost_reason(shard, key, hash, token, now);
    verdict(slot->node->e);
    slot->node->e.completed_at = now;
    slot->expires_at = saturating_add(now, ttl);
    shard.notify_settled();
    return ok_status();
  }

  Status extend(std::string_view key, Token token, milliseconds lease) override {
    if (Status valid = validate_lease(lease); !valid) return valid;
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    Slot* slot = owned(shard, key, hash, token, now);
    if (slot == nullptr) return lease_lost_reason(shard, key, hash, token, now);
    Entry& e = slot->node->e;
    e.lease_expires_at = saturating_add(now, lease);
    // A record never expires while its lease is live.
    slot->expires_at = std::max(slot->expires_at, e.lease_expires_at);
    return ok_status();
  }

  Status checkpoint(std::string_view key, Token token, const Checkpoint& cp) override {
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    Slot* slot = owned(shard, key, hash, token, now);
    if (slot == nullptr) return lease_lost_reason(shard, key, hash, token, now);
    slot->node->e.cold_part().checkpoint = cp;
    return ok_status();
  }

  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override {
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    Slot* slot = shard.table.find(key, hash);
    if (slot == nullptr) return std::optional<IdempotencyRecord>();
    if (slot->expired(now)) {
      erase(shard, shard.table.index_of(*slot));
      return std::optional<IdempotencyRecord>();
    }
    return std::optional<IdempotencyRecord>(to_record(*slot));
  }

  Result<bool> remove(std::string_view key) override {
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    Slot* slot = shard.table.find(key, hash);
    if (slot == nullptr) return false;
    const bool live = !slot->expired(now);
    erase(shard, shard.table.index_of(*slot));
    return live;
  }

  Result<ScanPage> scan(const ScanOptions& options) override {
    const Timestamp now = clock_->now();
    const std::size_t limit = options.limit == 0 ? 100 : options.limit;
    const bool by_age = options.older_than.count() > 0;
    const Timestamp cutoff = saturating_sub(now, options.older_than);
    // Keyset pagination over the key order: each page keeps the `limit`
    // smallest matching keys above the cursor, so pages are consistent with
    // the other stores (sorted by key) and no shard is locked for long.
    auto key_less = [](const IdempotencyRecord& a, const IdempotencyRecord& b) {
      return a.idempotency_key < b.idempotency_key;
    };
    std::vector<IdempotencyRecord> best;  // a max-heap on key, size <= limit
    best.reserve(std::min<std::size_t>(limit, 4096));
    for (std::size_t s = 0; s < shard_count_; ++s) {
      Shard& shard = shards_[s];
      std::lock_guard lock(shard.mutex);
      for (std::size_t i = 0; i < shard.table.capacity(); ++i) {
        const Slot& slot = shard.table.at(i);
        if (slot.node == nullptr || slot.expired(now)) continue;
        const Entry& e = slot.node->e;
        const std::string_view key = slot.node->key();
        if (!options.cursor.empty() && key <= options.cursor) continue;
        if (!options.prefix.empty() && !key.starts_with(options.prefix)) continue;
        if (options.status && e.status != *options.status) continue;
        if (by_age && e.first_seen_at > cutoff) continue;
        if (best.size() == limit) {
          if (key >= best.front().idempotency_key) continue;
          std::pop_heap(best.begin(), best.end(), key_less);
          best.pop_back();
        }
        best.push_back(to_record(slot));
        std::push_heap(best.begin(), best.end(), key_less);
      }
    }
    std::sort_heap(best.begin(), best.end(), key_less);
    ScanPage page;
    if (best.size() == limit) page.next_cursor = best.back().idempotency_key;
    page.records = std::move(best);
    return page;
  }

  Result<StoreStats> stats() override {
    const Timestamp now = clock_->now();
    StoreStats s;
    std::uint64_t bytes = 0;
    for (std::size_t sh = 0; sh < shard_count_; ++sh) {
      Shard& shard = shards_[sh];
      std::lock_guard lock(shard.mutex);
      bytes += shard.table.capacity() * sizeof(Slot);
      for (std::size_t i = 0; i < shard.table.capacity(); ++i) {
        const Slot& slot = shard.table.at(i);
        if (slot.node == nullptr || slot.expired(now)) continue;
        const Node* node = slot.node;
        const Entry& e = node->e;
        bytes += node_bytes(*node);
        switch (e.status) {
          case ProcessingStatus::kProcessing:
            ++s.processing;
            if (!s.oldest_processing || e.first_seen_at < s.oldest_processing->first_seen_at ||
                (e.first_seen_at == s.oldest_processing->first_seen_at &&
                 node->key() < s.oldest_processing->idempotency_key)) {
              s.oldest_processing = to_record(slot);
            }
            break;
          case ProcessingStatus::kCompleted: ++s.completed; break;
          case ProcessingStatus::kFailed: ++s.failed; break;
        }
      }
    }
    s.bytes = bytes;
    return s;
  }

  Result<SweepReport> sweep() override {
    SweepReport report;
    for (std::size_t sh = 0; sh < shard_count_; ++sh) {
      Shard& shard = shards_[sh];
      std::lock_guard lock(shard.mutex);
      const Timestamp now = clock_->now();
      for (std::size_t i = 0; i < shard.table.capacity();) {
        const Slot& slot = shard.table.at(i);
        if (slot.node != nullptr && slot.expired(now)) {
          erase(shard, i);  // another entry may have moved into slot i
          ++report.expired_removed;
        } else {
          ++i;
        }
      }
    }
    return report;
  }

  Status ping() override { return ok_status(); }

  Result<std::optional<std::uint64_t>> approximate_record_bytes(std::string_view key) override {
    const Timestamp now = clock_->now();
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::lock_guard lock(shard.mutex);
    const Slot* slot = shard.table.find(key, hash);
    if (slot == nullptr || slot->expired(now)) return std::optional<std::uint64_t>();
    // The node, plus this record's share of its shard's slot array.
    const std::size_t records = std::max<std::size_t>(shard.table.size(), 1);
    return std::optional<std::uint64_t>(node_bytes(*slot->node) + shard.table.capacity() * sizeof(Slot) / records);
  }

  Result<std::optional<IdempotencyRecord>> wait_settled(std::string_view key, milliseconds timeout) override {
    using Steady = std::chrono::steady_clock;
    const Steady::time_point deadline = saturating_add(Steady::now(), std::max(timeout, milliseconds(0)));
    const std::size_t hash = hash_key(key);
    Shard& shard = shards_[shard_index(hash)];
    std::unique_lock lock(shard.mutex);
    ++shard.waiters;
    class Leave {  // destroyed before `lock`, so still under the shard lock
     public:
      explicit Leave(Shard& s) noexcept : shard_(s) {}
      Leave(const Leave&) = delete;
      Leave& operator=(const Leave&) = delete;
      ~Leave() { --shard_.waiters; }

     private:
      Shard& shard_;
    } leave(shard);
    for (;;) {
      const Timestamp now = clock_->now();
      Slot* slot = shard.table.find(key, hash);
      if (slot == nullptr) return std::optional<IdempotencyRecord>();
      if (slot->expired(now)) {
        erase(shard, shard.table.index_of(*slot));
        return std::optional<IdempotencyRecord>();
      }
      const Entry& e = slot->node->e;
      const Steady::time_point steady_now = Steady::now();
      if (e.status != ProcessingStatus::kProcessing || e.lease_expires_at <= now || steady_now >= deadline) {
        return std::optional<IdempotencyRecord>(to_record(*slot));
      }
      // Verdicts, removals and expiries wake us; the lease running out does
      // not, so sleep at most until then, and re-read now and then in case
      // the clock jumps (a ManualClock moved by a test).
      const milliseconds nap = std::min(wait_poll_interval_, e.lease_expires_at - now);
      shard.settled.wait_for(lock, std::min<Steady::duration>(nap, deadline - steady_now));
    }
  }

 private:
  static std::size_t heap_bytes(const std::string& s) noexcept {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;  // beyond the small-string buffer
  }

  // What one record's node holds on the heap (without its table slot).
  static std::uint64_t node_bytes(const Node& node) noexcept {
    const Entry& e = node.e;
    std::uint64_t bytes = sizeof(Node) + node.key_size() + heap_bytes(e.event_id) + heap_bytes(e.event_type) +
                          e.fingerprint.heap_bytes() + (e.result ? heap_bytes(*e.result) : 0);
    if (e.cold) {
      bytes += sizeof(Cold) + (e.cold->error ? heap_bytes(*e.cold->error) : 0) +
               (e.cold->checkpoint ? e.cold->checkpoint->name.size() + e.cold->checkpoint->data.size() : 0);
    }
    return bytes;
  }

  std::size_t shard_index(std::size_t hash) const noexcept {
    // The table uses the low bits of the hash for slots; the shard takes the
    // top bits so that the two stay independent.
    return shard_bits_ == 0 ? 0 : hash >> (std::numeric_limits<std::size_t>::digits - shard_bits_);
  }

  Token next_token(Shard& shard, std::size_t index) const noexcept { return (++shard.counter << shard_bits_) | index; }

  ClaimOutcome acquire(Shard& shard, std::size_t index, Slot& slot, const ClaimRequest& req, Timestamp now,
                       AcquireKind kind) {
    Entry& e = slot.node->e;
    e.token = next_token(shard, index);
    e.lease_expires_at = saturating_add(now, req.lease);
    slot.expires_at = std::max(saturating_add(now, req.ttl), e.lease_expires_at);
    ClaimOutcome out;
    out.status = ClaimStatus::kAcquired;
    out.acquire_kind = kind;
    out.token = e.token;
    out.attempt = e.attempt;
    out.lease_expires_at = e.lease_expires_at;
    if (kind != AcquireKind::kNew && e.cold) out.checkpoint = e.cold->checkpoint;
    return out;
  }

  ClaimOutcome claim_existing(Shard& shard, std::size_t index, Slot& slot, const ClaimRequest& req, Timestamp now) {
    Entry& e = slot.node->e;
    ClaimOutcome out;
    if (fingerprint_mismatch(e.fingerprint.view(), req.fingerprint)) {
      out.status = ClaimStatus::kMismatch;
    } else if (e.status == ProcessingStatus::kCompleted) {
      out.status = ClaimStatus::kCompleted;
    } else if (e.status == ProcessingStatus::kFailed && !e.retryable) {
      out.status = ClaimStatus::kFailed;
    } else if (e.status == ProcessingStatus::kProcessing && e.lease_expires_at > now) {
      out.status = ClaimStatus::kInProgress;
    } else {
      const AcquireKind kind = e.status == ProcessingStatus::kProcessing ? AcquireKind::kTakeover : AcquireKind::kRetry;
      e.status = ProcessingStatus::kProcessing;
      ++e.attempt;
      e.retryable = true;
      e.result.reset();
      if (e.cold) e.cold->error.reset();
      e.completed_at.reset();
      if (!req.fingerprint.empty()) e.fingerprint.assign(req.fingerprint);
      return acquire(shard, index, slot, req, now, kind);
    }
    out.record = to_record(slot);
    return out;
  }

  // owned() returns the slot when `token` still owns `key`, else nullptr.
  static Slot* owned(Shard& shard, std::string_view key, std::size_t hash, Token token, Timestamp now) {
    Slot* slot = shard.table.find(key, hash);
    if (slot == nullptr || slot->expired(now)) return nullptr;
    const Entry& e = slot->node->e;
    if (e.token != token || e.status != ProcessingStatus::kProcessing) return nullptr;
    return slot;
  }

  static Error lease_lost_reason(Shard& shard, std::string_view key, std::size_t hash, Token token, Timestamp now) {
    const Slot* slot = shard.table.find(key, hash);
    if (slot == nullptr || slot->expired(now)) return lease_lost(key, "the record no longer exists");
    if (slot->node->e.token != token) return lease_lost(key, "the fencing token is stale");
    return lease_lost(key, "the record is no longer PROCESSING");
  }

  bool reserve_slot() noexcept {
    if (max_records_ == 0) return true;
    if (size_.fetch_add(1, std::memory_order_relaxed) >= max_records_) {
      size_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  // erase() drops a record (removed or expired): a waiter on it is done.
  void erase(Shard& shard, std::size_t slot) {
    if (max_records_ != 0) size_.fetch_sub(1, std::memory_order_relaxed);
    shard.table.erase_at(slot);
    shard.notify_settled();
  }

  // Inspects two slots per insert, round-robin (see the file comment). Only
  // the slot array is read unless a record has actually expired.
  void amortized_sweep(Shard& shard, Timestamp now) {
    for (int n = 0; n < 2; ++n) {
      const std::size_t i = shard.sweep_slot++ & (shard.table.capacity() - 1);
      const Slot& slot = shard.table.at(i);
      if (slot.node != nullptr && slot.expired(now)) erase(shard, i);
    }
  }

  std::shared_ptr<Clock> clock_;
  std::size_t shard_count_;
  std::size_t shard_bits_ = 0;
  std::unique_ptr<Shard[]> shards_;
  std::size_t max_records_;
  milliseconds wait_poll_interval_;
  std::atomic<std::size_t> size_{0};  // only maintained when max_records_ != 0
};

Error bad_url(std::string_view url, std::string_view why) {
  std::string msg = "memory store URL '";
  msg.append(url);
  msg += "': ";
  msg.append(why);
  msg += " (expected memory:// or memory://name, with optional ?max_records=N&shards=N)";
  return Error(ErrorCode::kInvalidConfiguration, std::move(msg));
}

bool valid_name(std::string_view name) noexcept {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

// The named stores of this process. Weak pointers: a named store lives as
// long as someone holds it, like any other store, and the registry never
// keeps records alive on its own.
class NamedStores {
 public:
  Result<std::shared_ptr<Store>> open(std::string_view url, const std::string& name, const MemoryStoreOptions& options,
                                      bool create_if_missing) {
    std::lock_guard lock(mutex_);
    std::erase_if(stores_, [](const auto& entry) { return entry.second.store.expired(); });
    if (auto it = stores_.find(name); it != stores_.end()) {
      const Named& named = it->second;
      // The last holder may have let go since the sweep above.
      if (std::shared_ptr<Store> existing = named.store.lock()) {
        if (named.shards != options.shards || named.max_records != options.max_records) {
          return bad_url(
              url, "memory://" + name + " is already open in this process with shards=" + std::to_string(named.shards) +
                       "&max_records=" + std::to_string(named.max_records) + "; open it with the same parameters");
        }
        return existing;
      }
      stores_.erase(it);
    }
    if (!create_if_missing) {
      return Error(ErrorCode::kNotFound, "memory store URL '" + std::string(url) + "': no store named '" + name +
                                             "' is open in this process (memory stores live inside one process; "
                                             "nothing was created)");
    }
    std::shared_ptr<Store> store = MemoryStore::create(options);
    stores_.emplace(name, Named{store, options.shards, options.max_records});
    return store;
  }

 private:
  struct Named {
    std::weak_ptr<Store> store;
    std::size_t shards;
    std::size_t max_records;
  };
  std::mutex mutex_;
  std::map<std::string, Named, std::less<>> stores_;
};

NamedStores& named_stores() {
  static NamedStores* stores = new NamedStores();  // never destroyed: usable during static destruction
  return *stores;
}

}  // namespace

std::shared_ptr<Store> MemoryStore::create(MemoryStoreOptions options) {
  return std::make_shared<MemoryStoreImpl>(std::move(options));
}

Result<std::shared_ptr<Store>> MemoryStore::open(std::string_view url, const OpenOptions& open_options) {
  constexpr std::string_view kScheme = "memory://";
  if (!url.starts_with(kScheme)) return bad_url(url, "scheme must be memory://");
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t q = rest.find('?');
  std::string_view authority = rest.substr(0, q);
  if (authority == "/") authority = {};
  if (!valid_name(authority)) {
    return bad_url(url, "a store name may hold only letters, digits, '-', '_' and '.' (and no path)");
  }
  MemoryStoreOptions options;
  if (q != std::string_view::npos) {
    auto params = detail::split_url_query(rest.substr(q + 1));
    if (!params) return bad_url(url, params.error().message());
    for (const auto& [name, value] : *params) {
      const std::optional<std::uint64_t> parsed = detail::parse_unsigned(value);
      if (!parsed) {
        return bad_url(url,
                       "'" + std::string(name) + "' must be a non-negative integer, got '" + std::string(value) + "'");
      }
      const auto number = static_cast<std::size_t>(*parsed);
      if (name == "max_records") {
        options.max_records = number;
      } else if (name == "shards") {
        if (number == 0 || number > 65536) return bad_url(url, "'shards' must be between 1 and 65536");
        options.shards = number;
      } else {
        return bad_url(url, "unknown query parameter '" + std::string(name) + "'");
      }
    }
  }
  if (authority.empty()) return create(std::move(options));
  return named_stores().open(url, std::string(authority), options, open_options.create_if_missing);
}

}  // namespace idem
