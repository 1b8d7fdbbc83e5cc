// MetricsRegistry: striped atomic counters and histograms, rendered in the
// Prometheus text format 0.0.4.
//
// Hot path cost per observation: one lock-free lookup of the label block (an
// acquire load of an immutable sorted snapshot plus a binary search over a
// handful of scopes) and one or two relaxed fetch_adds on a cache line that
// belongs to the calling thread's stripe. Nothing is allocated and no lock is
// taken after a label set's first use.
#include "idem/core/metrics.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace idem {
namespace detail {
namespace {

// Stripes: 16 owned, each by one live thread at a time, where an increment
// is a plain load + store (no locked instruction: the owner is the only
// writer), and 8 shared by any further threads, where it is an atomic add.
// Rendering sums all 24.
constexpr std::size_t kOwnedStripes = 16;
constexpr std::size_t kSharedStripes = 8;
constexpr std::size_t kStripes = kOwnedStripes + kSharedStripes;
constexpr std::size_t kCellsPerLine = 8;  // 8 x 8 bytes = one 64-byte line

// StripeOwner hands the owned stripes to threads and takes them back when a
// thread exits, so a service whose pool threads come and go keeps the fast
// path. The mutex makes the previous owner's last writes visible to the next.
class StripeOwner {
 public:
  StripeOwner() {
    std::lock_guard lock(mutex());
    auto& free = free_list();
    if (!free.empty()) {
      index_ = free.back();
      free.pop_back();
      owned_ = true;
    } else {
      index_ = kOwnedStripes + next_shared()++ % kSharedStripes;
    }
  }
  ~StripeOwner() {
    if (!owned_) return;
    std::lock_guard lock(mutex());
    free_list().push_back(index_);
  }
  StripeOwner(const StripeOwner&) = delete;
  StripeOwner& operator=(const StripeOwner&) = delete;

  std::size_t index() const noexcept { return index_; }
  bool owned() const noexcept { return owned_; }

 private:
  // Function-local statics: alive before any thread_local owner is made, and
  // leaked so that threads exiting during static destruction still find them.
  static std::mutex& mutex() {
    static auto* m = new std::mutex;
    return *m;
  }
  static std::vector<std::size_t>& free_list() {
    static auto* list = [] {
      auto* l = new std::vector<std::size_t>;
      for (std::size_t i = kOwnedStripes; i > 0; --i) l->push_back(i - 1);
      return l;
    }();
    return *list;
  }
  static std::size_t& next_shared() {
    static std::size_t n = 0;
    return n;
  }

  std::size_t index_ = 0;
  bool owned_ = false;
};

const StripeOwner& stripe() noexcept {
  thread_local const StripeOwner owner;
  return owner;
}

struct alignas(64) Line {
  std::array<std::atomic<std::uint64_t>, kCellsPerLine> cells{};
};

// StripedCells is `count` counters, each split over kStripes cache-line
// separated copies. A thread writes only its stripe; readers add them up.
class StripedCells {
 public:
  explicit StripedCells(std::size_t count)
      : count_(count),
        lines_per_stripe_((count + kCellsPerLine - 1) / kCellsPerLine),
        lines_(std::make_unique<Line[]>(lines_per_stripe_ * kStripes)) {}

  void add(std::size_t cell, std::uint64_t value) noexcept {
    const StripeOwner& owner = stripe();
    std::atomic<std::uint64_t>& slot =
        lines_[owner.index() * lines_per_stripe_ + cell / kCellsPerLine].cells[cell % kCellsPerLine];
    if (owner.owned()) {
      // Sole writer: readers may see the old or the new value, never a torn
      // one, and no increment is lost.
      slot.store(slot.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
    } else {
      slot.fetch_add(value, std::memory_order_relaxed);
    }
  }

  std::uint64_t sum(std::size_t cell) const noexcept {
    std::uint64_t total = 0;
    for (std::size_t stripe = 0; stripe < kStripes; ++stripe) {
      const Line& line = lines_[stripe * lines_per_stripe_ + cell / kCellsPerLine];
      total += line.cells[cell % kCellsPerLine].load(std::memory_order_relaxed);
    }
    return total;
  }

  std::size_t size() const noexcept { return count_; }

 private:
  std::size_t count_;
  std::size_t lines_per_stripe_;
  std::unique_ptr<Line[]> lines_;
};

// Histogram layout inside a StripedCells: one cell per finite bucket, one for
// the overflow (+Inf only), one for the sum in nanoseconds. Buckets are stored
// non-cumulative (one increment per observation) and summed when rendered.
class HistogramLayout {
 public:
  explicit HistogramLayout(std::vector<double> bounds_seconds) : bounds_seconds_(std::move(bounds_seconds)) {
    for (double bound : bounds_seconds_) {
      bounds_ns_.push_back(static_cast<std::uint64_t>(std::llround(bound * 1e9)));
    }
  }
  std::size_t cells() const noexcept { return bounds_ns_.size() + 2; }
  std::size_t sum_cell() const noexcept { return bounds_ns_.size() + 1; }

  void observe(StripedCells& cells, std::size_t base, std::chrono::nanoseconds latency) const noexcept {
    const auto ns = static_cast<std::uint64_t>(std::max<std::chrono::nanoseconds::rep>(latency.count(), 0));
    // `le` is inclusive: the first bound >= ns.
    const auto it = std::lower_bound(bounds_ns_.begin(), bounds_ns_.end(), ns);
    cells.add(base + static_cast<std::size_t>(it - bounds_ns_.begin()), 1);
    cells.add(base + sum_cell(), ns);
  }

  const std::vector<double>& bounds_seconds() const noexcept { return bounds_seconds_; }

 private:
  std::vector<double> bounds_seconds_;
  std::vector<std::uint64_t> bounds_ns_;
};

// Outcome counters per scope.
enum ScopeCounter : std::size_t {
  kClaims,
  kNew,
  kTakeovers,
  kRetries,
  kDupCompleted,
  kDupInProgress,
  kDupFailed,
  kMismatches,
  kCompletions,
  kFailRetryable,
  kFailTerminal,
  kFailAbandoned,
  kLeaseLost,
  kFailOpen,
  kScopeCounterCount,
};

constexpr std::size_t kOpCount = 8;          // StoreOp values
constexpr std::size_t kErrorCodeCount = 14;  // ErrorCode values

std::string_view op_name(std::size_t op) noexcept {
  // Kept local (not idem::to_string) so the registry depends on no other
  // translation unit of the core; the names are those of observer.h.
  static constexpr std::array<std::string_view, kOpCount> kNames = {"claim",  "claim_many", "complete", "fail",
                                                                    "extend", "checkpoint", "get",      "remove"};
  return op < kNames.size() ? kNames[op] : "unknown";
}

std::string_view code_name(std::size_t code) noexcept {
  static constexpr std::array<std::string_view, kErrorCodeCount> kNames = {
      "ok",       "invalid_argument",      "unavailable",        "timeout",    "lease_lost",
      "mismatch", "result_too_large",      "resource_exhausted", "not_found",  "corrupt",
      "internal", "invalid_configuration", "duplicate",          "in_progress"};
  return code < kNames.size() ? kNames[code] : "unknown";
}

}  // namespace

struct ScopeBlock {
  ScopeBlock(std::string name, const HistogramLayout& handler_layout)
      : scope(std::move(name)), counters(kScopeCounterCount), handler(handler_layout.cells()) {}
  std::string scope;
  StripedCells counters;
  StripedCells handler;
};

struct StoreBlock {
  StoreBlock(std::string name, const HistogramLayout& store_layout)
      : store(std::move(name)), latency(store_layout.cells() * kOpCount), errors(kOpCount * kErrorCodeCount) {}
  std::string store;
  StripedCells latency;          // kOpCount histograms, op-major
  StripedCells errors;           // op-major, by error code
  std::atomic<int> circuit{-1};  // -1: never reported
  // The last StoreSnapshot; written by one poller every few seconds, so a
  // mutex costs nothing that matters.
  std::mutex snapshot_mutex;
  std::optional<StoreSnapshot> snapshot;
};

// LabelCache maps a label value to its block. Readers see an immutable sorted
// snapshot through one atomic pointer; a writer (first use of a value) copies
// it under the mutex. Old snapshots stay alive until the registry dies, since
// a reader may still be searching one: the number of distinct scopes and
// stores is small, so this costs little.
template <typename Block>
class LabelCache {
 public:
  using Entry = std::pair<std::string_view, Block*>;
  using Snapshot = std::vector<Entry>;

  LabelCache() : current_(&empty_) {}

  template <typename Make>
  Block& get(std::string_view name, Make&& make) {
    const Snapshot* snapshot = current_.load(std::memory_order_acquire);
    if (Block* found = find(*snapshot, name)) return *found;
    std::lock_guard lock(mutex_);
    snapshot = current_.load(std::memory_order_acquire);
    if (Block* found = find(*snapshot, name)) return *found;
    blocks_.push_back(make(std::string(name)));
    Block* block = blocks_.back().get();
    auto next = std::make_unique<Snapshot>(*snapshot);
    // The key views the block's own copy of the name, which never moves.
    const std::string_view key = block_name(*block);
    next->insert(std::upper_bound(next->begin(), next->end(), key,
                                  [](std::string_view k, const Entry& e) { return k < e.first; }),
                 Entry{key, block});
    current_.store(next.get(), std::memory_order_release);
    snapshots_.push_back(std::move(next));
    return *block;
  }

  // Every block, sorted by label value.
  const Snapshot& all() const noexcept { return *current_.load(std::memory_order_acquire); }

 private:
  static Block* find(const Snapshot& snapshot, std::string_view name) noexcept {
    auto it = std::lower_bound(snapshot.begin(), snapshot.end(), name,
                               [](const Entry& e, std::string_view k) { return e.first < k; });
    return it != snapshot.end() && it->first == name ? it->second : nullptr;
  }
  static std::string_view block_name(const ScopeBlock& b) noexcept { return b.scope; }
  static std::string_view block_name(const StoreBlock& b) noexcept { return b.store; }

  Snapshot empty_;
  std::atomic<const Snapshot*> current_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::vector<std::unique_ptr<Snapshot>> snapshots_;
};

struct MetricsState {
  MetricsState(MetricsOptions opts, std::vector<double> store_bounds, std::vector<double> handler_bounds)
      : options(std::move(opts)), store_layout(std::move(store_bounds)), handler_layout(std::move(handler_bounds)) {}

  ScopeBlock& scope(std::string_view name) {
    return scopes.get(name,
                      [this](std::string n) { return std::make_unique<ScopeBlock>(std::move(n), handler_layout); });
  }
  StoreBlock& store(std::string_view name) {
    return stores.get(name, [this](std::string n) { return std::make_unique<StoreBlock>(std::move(n), store_layout); });
  }

  void learn_store(std::string_view kind) {
    if (learned_store.load(std::memory_order_acquire) != nullptr) return;
    std::lock_guard lock(learn_mutex);
    if (learned_store.load(std::memory_order_relaxed) != nullptr) return;
    learned_store_value = std::string(kind);
    learned_store.store(&learned_store_value, std::memory_order_release);
  }

  std::string_view store_label() const noexcept {
    if (!options.store.empty()) return options.store;
    const std::string* learned = learned_store.load(std::memory_order_acquire);
    return learned != nullptr ? std::string_view(*learned) : std::string_view("unknown");
  }

  MetricsOptions options;
  HistogramLayout store_layout;
  HistogramLayout handler_layout;
  LabelCache<ScopeBlock> scopes;
  LabelCache<StoreBlock> stores;
  std::mutex learn_mutex;
  std::string learned_store_value;
  std::atomic<const std::string*> learned_store{nullptr};
  // Guarded handlers started and ended; in flight is the difference. Two
  // monotonic striped counters instead of one shared gauge: starting and
  // ending are on the hot path, often on different threads.
  static constexpr std::size_t kHandlersStarted = 0;
  static constexpr std::size_t kHandlersEnded = 1;
  StripedCells handlers{2};
};

}  // namespace detail

namespace {

using detail::ScopeCounter;

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

std::vector<double> checked_bounds(std::vector<double> bounds, std::vector<double> defaults, const char* what) {
  if (bounds.empty()) bounds = std::move(defaults);
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || bounds[i] <= 0 || (i > 0 && bounds[i] <= bounds[i - 1])) {
      throw std::invalid_argument(std::string("MetricsOptions::") + what +
                                  " must be finite, positive and strictly ascending");
    }
  }
  return bounds;
}

void append_double(std::string& out, double value) {
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  std::array<char, 32> buffer{};
  auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (ec != std::errc()) {
    out += "NaN";
    return;
  }
  out.append(buffer.data(), end);
}

void append_uint(std::string& out, std::uint64_t value) {
  std::array<char, 24> buffer{};
  auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  (void)ec;  // 24 characters always suffice for 64 bits
  out.append(buffer.data(), end);
}

// Writer renders families; it guarantees HELP and TYPE precede the samples
// and that each family is one contiguous group.
class Writer {
 public:
  explicit Writer(std::string_view prefix) : prefix_(prefix) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += prefix_;
    out_ += name;
    out_ += ' ';
    for (char c : help) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
    out_ += "\n# TYPE ";
    out_ += prefix_;
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // labels: pairs of name, value (values escaped here).
  void sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              std::string_view extra_label, std::string_view extra_value, std::uint64_t value) {
    begin_sample(name, labels, extra_label, extra_value);
    append_uint(out_, value);
    out_ += '\n';
  }
  void sample_double(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                     std::string_view extra_label, std::string_view extra_value, double value) {
    begin_sample(name, labels, extra_label, extra_value);
    append_double(out_, value);
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  void begin_sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                    std::string_view extra_label, std::string_view extra_value) {
    out_ += prefix_;
    out_ += name;
    bool first = true;
    auto add = [&](std::string_view label, std::string_view value) {
      out_ += first ? '{' : ',';
      first = false;
      out_ += label;
      out_ += "=\"";
      out_ += escape_label_value(value);
      out_ += '"';
    };
    for (const auto& [label, value] : labels) add(label, value);
    if (!extra_label.empty()) add(extra_label, extra_value);
    if (!first) out_ += '}';
    out_ += ' ';
  }

  std::string_view prefix_;
  std::string out_;
};

void render_histogram(Writer& w, std::string_view name, const detail::HistogramLayout& layout,
                      const detail::StripedCells& cells, std::size_t base,
                      std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  const std::string bucket = std::string(name) + "_bucket";
  const auto& bounds = layout.bounds_seconds();
  // Read each cell once, so that +Inf and _count agree even while other
  // threads keep observing.
  std::uint64_t cumulative = 0;
  std::string le;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += cells.sum(base + i);
    le.clear();
    append_double(le, bounds[i]);
    w.sample(bucket, labels, "le", le, cumulative);
  }
  cumulative += cells.sum(base + bounds.size());
  w.sample(bucket, labels, "le", "+Inf", cumulative);
  const double sum_seconds = static_cast<double>(cells.sum(base + layout.sum_cell())) / 1e9;
  w.sample_double(std::string(name) + "_sum", labels, "", "", sum_seconds);
  w.sample(std::string(name) + "_count", labels, "", "", cumulative);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

MetricsRegistry::MetricsRegistry(MetricsOptions options) {
  if (!valid_metric_name(options.prefix)) {
    throw std::invalid_argument("MetricsOptions::prefix must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  auto store_bounds =
      checked_bounds(std::move(options.store_buckets),
                     {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
                     "store_buckets");
  auto handler_bounds = checked_bounds(std::move(options.handler_buckets),
                                       {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
                                       "handler_buckets");
  state_ =
      std::make_unique<detail::MetricsState>(std::move(options), std::move(store_bounds), std::move(handler_bounds));
}

MetricsRegistry::~MetricsRegistry() = default;

void MetricsRegistry::on_store_call(std::string_view store_kind, StoreOp op, std::chrono::nanoseconds latency,
                                    const Error* error) {
  if (state_->options.store.empty()) state_->learn_store(store_kind);
  detail::StoreBlock& block = state_->store(store_kind);
  const auto op_index = std::min<std::size_t>(static_cast<std::size_t>(op), detail::kOpCount - 1);
  state_->store_layout.observe(block.latency, op_index * state_->store_layout.cells(), latency);
  if (error != nullptr) {
    const auto code = std::min<std::size_t>(static_cast<std::size_t>(error->code()), detail::kErrorCodeCount - 1);
    block.errors.add(op_index * detail::kErrorCodeCount + code, 1);
  }
}

void MetricsRegistry::on_claim(const ClaimObservation& observation) {
  // A failed claim (null outcome) is already counted by on_store_call as a
  // store error; counting it here too would count one failure twice.
  if (observation.outcome == nullptr) return;
  detail::StripedCells& c = state_->scope(observation.scope).counters;
  c.add(ScopeCounter::kClaims, 1);
  switch (observation.outcome->status) {
    case ClaimStatus::kAcquired:
      switch (observation.outcome->acquire_kind) {
        case AcquireKind::kNew: c.add(ScopeCounter::kNew, 1); break;
        case AcquireKind::kTakeover: c.add(ScopeCounter::kTakeovers, 1); break;
        case AcquireKind::kRetry: c.add(ScopeCounter::kRetries, 1); break;
      }
      break;
    case ClaimStatus::kInProgress: c.add(ScopeCounter::kDupInProgress, 1); break;
    case ClaimStatus::kCompleted: c.add(ScopeCounter::kDupCompleted, 1); break;
    case ClaimStatus::kFailed: c.add(ScopeCounter::kDupFailed, 1); break;
    case ClaimStatus::kMismatch: c.add(ScopeCounter::kMismatches, 1); break;
  }
}

void MetricsRegistry::on_handler(std::string_view scope, HandlerOutcome outcome, std::chrono::nanoseconds latency) {
  detail::ScopeBlock& block = state_->scope(scope);
  state_->handler_layout.observe(block.handler, 0, latency);
  switch (outcome) {
    case HandlerOutcome::kCompleted: block.counters.add(ScopeCounter::kCompletions, 1); break;
    case HandlerOutcome::kFailedRetryable: block.counters.add(ScopeCounter::kFailRetryable, 1); break;
    case HandlerOutcome::kFailedTerminal: block.counters.add(ScopeCounter::kFailTerminal, 1); break;
    case HandlerOutcome::kLeaseLost: block.counters.add(ScopeCounter::kLeaseLost, 1); break;
    case HandlerOutcome::kAbandoned: block.counters.add(ScopeCounter::kFailAbandoned, 1); break;
  }
}

void MetricsRegistry::on_fail_open(std::string_view scope, const Error& /*error*/) {
  state_->scope(scope).counters.add(ScopeCounter::kFailOpen, 1);
}

void MetricsRegistry::set_circuit_state(std::string_view store, CircuitState state) {
  state_->store(store).circuit.store(static_cast<int>(state), std::memory_order_relaxed);
}

void MetricsRegistry::set_store_snapshot(std::string_view store, const StoreSnapshot& snapshot) {
  detail::StoreBlock& block = state_->store(store);
  std::lock_guard lock(block.snapshot_mutex);
  block.snapshot = snapshot;
}

namespace {
// InFlightSpan counts one guarded handler from its start to its verdict.
class InFlightSpan final : public SpanScope {
 public:
  explicit InFlightSpan(detail::StripedCells& handlers) : handlers_(handlers) {
    handlers_.add(detail::MetricsState::kHandlersStarted, 1);
  }
  ~InFlightSpan() override { handlers_.add(detail::MetricsState::kHandlersEnded, 1); }
  InFlightSpan(const InFlightSpan&) = delete;
  InFlightSpan& operator=(const InFlightSpan&) = delete;
  void set_attribute(std::string_view /*name*/, std::string_view /*value*/) override {}
  void set_attribute(std::string_view /*name*/, std::int64_t /*value*/) override {}
  void set_error(std::string_view /*message*/) override {}

 private:
  detail::StripedCells& handlers_;
};
}  // namespace

std::unique_ptr<SpanScope> MetricsRegistry::start_span(std::string_view name) {
  // The name of observer.h's handler span (trace::kSpanHandler); spelled out
  // so that the registry depends on no other part of the core.
  if (name != "idem.handler") return nullptr;
  return std::make_unique<InFlightSpan>(state_->handlers);
}

std::string MetricsRegistry::render() const {
  const detail::MetricsState& s = *state_;
  Writer w(s.options.prefix);
  const auto& scopes = s.scopes.all();
  const auto& stores = s.stores.all();
  const std::string_view store = s.store_label();

  struct Simple {
    std::string_view name;
    std::string_view help;
    ScopeCounter counter;
  };
  auto simple = [&](const Simple& family) {
    w.family(family.name, "counter", family.help);
    for (const auto& [scope, block] : scopes) {
      w.sample(family.name, {{"scope", scope}, {"store", store}}, "", "", block->counters.sum(family.counter));
    }
  };
  struct Labelled {
    std::string_view value;
    ScopeCounter counter;
  };
  auto labelled = [&](std::string_view name, std::string_view help, std::string_view label,
                      std::initializer_list<Labelled> values) {
    w.family(name, "counter", help);
    for (const auto& [scope, block] : scopes) {
      for (const Labelled& v : values) {
        w.sample(name, {{"scope", scope}, {"store", store}}, label, v.value, block->counters.sum(v.counter));
      }
    }
  };

  simple({"claims_total", "Claims decided by the store.", ScopeCounter::kClaims});
  simple({"new_total", "Claims acquired for a key never seen (or expired).", ScopeCounter::kNew});
  simple({"takeovers_total", "Claims acquired over a PROCESSING record whose lease had expired.",
          ScopeCounter::kTakeovers});
  simple({"retries_total", "Claims acquired over a retryable FAILED record.", ScopeCounter::kRetries});
  labelled("duplicates_total", "Deliveries not run because the key was seen before, by the record's state.", "state",
           {{"completed", ScopeCounter::kDupCompleted},
            {"in_progress", ScopeCounter::kDupInProgress},
            {"failed", ScopeCounter::kDupFailed}});
  simple({"mismatches_total", "Keys reused with a different payload.", ScopeCounter::kMismatches});
  simple({"completions_total", "Handler results stored.", ScopeCounter::kCompletions});
  labelled("failures_total", "Handler failures stored, by kind (abandoned: guard left without completing).", "kind",
           {{"retryable", ScopeCounter::kFailRetryable},
            {"terminal", ScopeCounter::kFailTerminal},
            {"abandoned", ScopeCounter::kFailAbandoned}});
  simple(
      {"lease_lost_total", "Results refused because a newer owner had taken the key over.", ScopeCounter::kLeaseLost});
  simple({"fail_open_total", "Handlers run without protection because the store was down (fail-open).",
          ScopeCounter::kFailOpen});

  // An operation is "used" once it has a latency observation (every call,
  // failed or not, has one).
  auto op_used = [&](const detail::StoreBlock& block, std::size_t op) {
    const std::size_t base = op * s.store_layout.cells();
    for (std::size_t i = 0; i + 1 < s.store_layout.cells(); ++i) {
      if (block.latency.sum(base + i) != 0) return true;
    }
    return false;
  };

  w.family("store_errors_total", "counter", "Store calls that failed, by operation and error code.");
  for (const auto& [kind, block] : stores) {
    for (std::size_t op = 0; op < detail::kOpCount; ++op) {
      const bool used = op_used(*block, op);
      for (std::size_t code = 0; code < detail::kErrorCodeCount; ++code) {
        const std::uint64_t n = block->errors.sum(op * detail::kErrorCodeCount + code);
        // Only codes that occurred: 88 always-zero series per store would
        // drown the useful ones. The outage codes are the exception: they
        // start at 0 for every operation in use, because rate() and
        // increase() cannot see the first increment of a series that
        // appears at 1, and that first error is what the error-rate alert
        // and the dashboard are waiting for.
        const bool outage_code = code == static_cast<std::size_t>(ErrorCode::kUnavailable) ||
                                 code == static_cast<std::size_t>(ErrorCode::kTimeout);
        if (n != 0 || (used && outage_code)) {
          w.sample("store_errors_total", {{"store", kind}, {"op", detail::op_name(op)}}, "code",
                   detail::code_name(code), n);
        }
      }
    }
  }

  w.family("circuit_breaker_state", "gauge", "Circuit breaker state of the store: 0 closed, 1 half-open, 2 open.");
  for (const auto& [kind, block] : stores) {
    // Never reported means closed: the checker reports transitions away
    // from an initial kClosed, and stores without a breaker never leave it.
    const int circuit = std::max(block->circuit.load(std::memory_order_relaxed), 0);
    w.sample("circuit_breaker_state", {{"store", kind}}, "", "", static_cast<std::uint64_t>(circuit));
  }

  w.family("store_call_duration_seconds", "histogram", "Latency of store calls, by operation.");
  for (const auto& [kind, block] : stores) {
    for (std::size_t op = 0; op < detail::kOpCount; ++op) {
      const std::size_t base = op * s.store_layout.cells();
      // Skip operations never called: their series would be all zeros.
      if (!op_used(*block, op)) continue;
      render_histogram(w, "store_call_duration_seconds", s.store_layout, block->latency, base,
                       {{"store", kind}, {"op", detail::op_name(op)}});
    }
  }

  w.family("handler_duration_seconds", "histogram", "Handler run time, whatever the outcome.");
  for (const auto& [scope, block] : scopes) {
    render_histogram(w, "handler_duration_seconds", s.handler_layout, block->handler, 0,
                     {{"scope", scope}, {"store", store}});
  }

  w.family("handlers_in_flight", "gauge",
           "Handlers running now under the guard or the wrapper (claim held, no verdict).");
  {
    // Ended first: a handler that ends between the two reads then shows as
    // still running, never as a negative count.
    const std::uint64_t ended = s.handlers.sum(detail::MetricsState::kHandlersEnded);
    const std::uint64_t started = s.handlers.sum(detail::MetricsState::kHandlersStarted);
    w.sample("handlers_in_flight", {{"store", store}}, "", "", started >= ended ? started - ended : 0);
  }

  std::vector<std::pair<std::string_view, StoreSnapshot>> snapshots;
  for (const auto& [kind, block] : stores) {
    std::lock_guard lock(block->snapshot_mutex);
    if (block->snapshot) snapshots.emplace_back(kind, *block->snapshot);
  }
  if (!snapshots.empty()) {
    auto seconds = [](std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1e3; };
    w.family("records", "gauge", "Live records in the store, by status (from the last store snapshot).");
    for (const auto& [kind, snap] : snapshots) {
      w.sample("records", {{"store", kind}}, "status", "processing", snap.processing);
      w.sample("records", {{"store", kind}}, "status", "completed", snap.completed);
      w.sample("records", {{"store", kind}}, "status", "failed", snap.failed);
    }
    w.family("processing_oldest_age_seconds", "gauge", "Age of the oldest PROCESSING record; 0 when none.");
    for (const auto& [kind, snap] : snapshots) {
      w.sample_double("processing_oldest_age_seconds", {{"store", kind}}, "", "", seconds(snap.oldest_processing_age));
    }
    w.family("processing_lease_expired_records", "gauge",
             "PROCESSING records whose lease ran out and that nobody took over yet (their worker died or hung).");
    for (const auto& [kind, snap] : snapshots) {
      w.sample("processing_lease_expired_records", {{"store", kind}}, "", "", snap.lease_expired);
    }
    w.family("processing_lease_expired_max_seconds", "gauge",
             "How long ago the longest-expired lease of a PROCESSING record ran out; 0 when none.");
    for (const auto& [kind, snap] : snapshots) {
      w.sample_double("processing_lease_expired_max_seconds", {{"store", kind}}, "", "",
                      seconds(snap.lease_expired_max));
    }
    w.family("store_snapshot_timestamp_seconds", "gauge", "When the last store snapshot was taken (Unix time).");
    for (const auto& [kind, snap] : snapshots) {
      w.sample_double("store_snapshot_timestamp_seconds", {{"store", kind}}, "", "",
                      seconds(snap.taken_at.time_since_epoch()));
    }
  }
  return w.take();
}

std::uint64_t MetricsRegistry::counter_value(std::string_view name, std::string_view labels) const {
  const std::string text = render();
  std::string needle = std::string(name);
  if (!labels.empty()) {
    needle += '{';
    needle += labels;
    needle += '}';
  }
  needle += ' ';
  std::size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const std::size_t start = pos + needle.size();
      const std::size_t end = text.find('\n', start);
      std::uint64_t value = 0;
      std::from_chars(text.data() + start, text.data() + end, value);
      return value;
    }
    pos += needle.size();
  }
  return 0;
}

}  // namespace idem
