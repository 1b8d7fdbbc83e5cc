// The history checker; see checker.h for what it proves.
#include "chaos/checker.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>

namespace idem::chaos {
namespace {

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

enum class Kind : std::uint8_t { kClaim, kComplete, kFail, kExtend };

// Step is one call of a worker: its invocation and, unless the process died
// first, its answer.
struct Step {
  Kind kind = Kind::kClaim;
  std::string proc;
  pid_t pid = 0;
  std::int64_t key = -1;
  std::uint64_t token = 0;  // the caller's token; for claims the answer's token
  std::string fail_kind;    // fail: retryable | terminal
  std::int64_t inv_us = 0;
  std::int64_t ret_us = kNever;  // kNever: no answer (indeterminate)
  bool ok = false;               // answered without an error
  std::string status;            // claim status or error code
  std::int64_t aux = 0;
  std::size_t inv_line = 0;
  std::size_t ret_line = 0;

  bool answered() const { return ret_us != kNever; }
  bool acquired() const {
    return kind == Kind::kClaim && ok && (status == "new" || status == "takeover" || status == "retry");
  }
};

struct Effect {
  std::string proc;
  pid_t pid = 0;
  std::uint64_t token = 0;
  std::int64_t begin_us = 0;
  std::int64_t end_us = kNever;
  std::size_t line = 0;
};

struct Observation {
  std::uint64_t result_token = 0;
  std::size_t line = 0;
  std::string source;
};

struct Row {
  std::uint64_t token = 0;
  std::size_t line = 0;
};

struct KeyState {
  std::vector<Step> steps;
  std::vector<Effect> effects;
  std::vector<Row> rows;  // committed effects (transactional store)
  std::vector<Observation> completed_seen;
  std::optional<Event> final_read;
};

struct Interval {
  std::int64_t from = 0;
  std::int64_t to = kNever;
};

bool overlaps(const Interval& a, const Interval& b) { return std::max(a.from, b.from) < std::min(a.to, b.to); }

std::optional<Kind> kind_of(std::string_view op, std::string_view* suffix) {
  const auto dot = op.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view name = op.substr(0, dot);
  *suffix = op.substr(dot + 1);
  if (name == "claim") return Kind::kClaim;
  if (name == "complete") return Kind::kComplete;
  if (name == "fail") return Kind::kFail;
  if (name == "extend") return Kind::kExtend;
  return std::nullopt;
}

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::kClaim: return "claim";
    case Kind::kComplete: return "complete";
    case Kind::kFail: return "fail";
    case Kind::kExtend: return "extend";
  }
  return "?";
}

std::string describe(const Step& s) {
  std::ostringstream o;
  o << kind_name(s.kind) << " by " << s.proc << " token " << s.token << " (line " << s.inv_line;
  if (s.answered()) {
    o << ".." << s.ret_line << ", " << (s.ok ? "ok " : "error ") << s.status;
  } else {
    o << ", no answer";
  }
  o << ")";
  return o.str();
}

class Checker {
 public:
  Checker(const std::vector<Event>& events, const CheckOptions& options) : options_(options) {
    report_.transactional = !options.duplicates_allowed;
    read(events);
  }

  Report run() {
    for (auto& [key, state] : keys_) check_key(key, state);
    return std::move(report_);
  }

 private:
  void violation(std::string kind, std::int64_t key, std::string detail) {
    const std::uint64_t n = ++report_.violation_counts[kind];
    if (n <= options_.max_examples) report_.violations.push_back({std::move(kind), key, std::move(detail)});
  }
  void count(const std::string& name, std::uint64_t n = 1) { report_.counts[name] += n; }

  // --- reading ---------------------------------------------------------------

  void read(const std::vector<Event>& events) {
    std::unordered_map<std::string, Step> pending;  // per proc: the call in flight
    auto flush_pending = [&](const std::string& proc) {
      auto it = pending.find(proc);
      if (it == pending.end()) return;
      count("indeterminate");
      keys_[it->second.key].steps.push_back(std::move(it->second));
      pending.erase(it);
    };
    for (const Event& e : events) {
      std::string_view suffix;
      if (auto kind = kind_of(e.op, &suffix)) {
        if (suffix == "inv") {
          flush_pending(e.proc);  // a process runs one call at a time
          Step s;
          s.kind = *kind;
          s.proc = e.proc;
          s.pid = e.pid();
          s.key = e.key;
          s.token = e.token;
          s.fail_kind = e.status;
          s.inv_us = e.time_us;
          s.inv_line = e.line;
          pending[e.proc] = std::move(s);
          if (*kind == Kind::kClaim) count("claims");
          continue;
        }
        auto it = pending.find(e.proc);
        if (it == pending.end() || it->second.kind != *kind || it->second.key != e.key) {
          violation(
              "malformed-history", e.key,
              "line " + std::to_string(e.line) + ": answer '" + e.op + "' without a matching invocation by " + e.proc);
          continue;
        }
        Step s = std::move(it->second);
        pending.erase(it);
        s.ret_us = e.time_us;
        s.ret_line = e.line;
        s.ok = suffix == "ok";
        s.status = e.status;
        s.aux = e.aux;
        if (*kind == Kind::kClaim) s.token = e.token;
        tally(s);
        if (s.kind == Kind::kClaim && s.ok && s.status == "completed") {
          keys_[s.key].completed_seen.push_back({static_cast<std::uint64_t>(s.aux), e.line, "claim"});
        }
        keys_[s.key].steps.push_back(std::move(s));
        continue;
      }
      read_other(e);
    }
    std::vector<std::string> left;
    left.reserve(pending.size());
    for (const auto& [proc, step] : pending) left.push_back(proc);
    for (const auto& proc : left) flush_pending(proc);
  }

  void tally(const Step& s) {
    if (!s.ok) {
      count("errors." + s.status);
      if (s.status == "lease_lost") count("fenced");
      return;
    }
    switch (s.kind) {
      case Kind::kClaim:
        if (s.acquired()) {
          count("acquired");
          count("acquired." + s.status);
          // A claim that waited in the store (a lock, a slow server) longer
          // than its lease returns a lease that has already run out.
          if (s.ret_us >= s.aux * 1000) count("acquired.expired_on_arrival");
        } else {
          count("claim." + s.status);
        }
        break;
      case Kind::kComplete: count("complete.ok"); break;
      case Kind::kFail: count("fail.ok." + s.fail_kind); break;
      case Kind::kExtend: count("extend.ok"); break;
    }
  }

  void read_other(const Event& e) {
    if (e.op == op::kEffectBegin) {
      keys_[e.key].effects.push_back({e.proc, e.pid(), e.token, e.time_us, kNever, e.line});
      ++report_.effects;
    } else if (e.op == op::kEffectEnd) {
      for (Effect& f : keys_[e.key].effects) {
        if (f.proc == e.proc && f.token == e.token && f.end_us == kNever) f.end_us = e.time_us;
      }
    } else if (e.op == op::kGetOk || e.op == op::kFinal) {
      if (e.status == "completed") {
        keys_[e.key].completed_seen.push_back(
            {static_cast<std::uint64_t>(e.aux), e.line, e.op == op::kFinal ? "final read" : "read"});
      }
      if (e.op == op::kFinal) keys_[e.key].final_read = e;
    } else if (e.op == op::kGetErr) {
      count("errors." + e.status);
    } else if (e.op == op::kRow) {
      keys_[e.key].rows.push_back({e.token, e.line});
      ++report_.committed;
    } else if (e.op == op::kCrash) {
      crashes_[e.pid()].push_back(e);
      count("faults.crash." + e.status);
    } else if (e.op == op::kKill) {
      auto& t = kills_[static_cast<pid_t>(e.aux)];
      if (t == 0) t = e.time_us;
      count("faults.kill");
    } else if (e.op == op::kStop) {
      stops_[static_cast<pid_t>(e.aux)].push_back({e.time_us, kNever});
      count("faults.stop");
    } else if (e.op == op::kCont) {
      auto& list = stops_[static_cast<pid_t>(e.aux)];
      if (!list.empty() && list.back().to == kNever) list.back().to = e.time_us;
    } else if (e.op == op::kStoreFault) {
      store_faults_.push_back({e.time_us, kNever});
      count("faults.store." + e.status);
    } else if (e.op == op::kStoreHeal) {
      for (Interval& i : store_faults_) {
        if (i.to == kNever) i.to = e.time_us;
      }
    } else if (e.op == op::kStart) {
      count("workers");
    }
  }

  // --- per key ---------------------------------------------------------------

  void check_key(std::int64_t key, KeyState& k) {
    if (key < 0) return;
    ++report_.keys;
    std::vector<const Step*> acquisitions;
    std::vector<const Step*> writes;  // accepted complete / fail / extend
    std::set<std::uint64_t> tokens;
    for (const Step& s : k.steps) {
      if (s.acquired()) {
        acquisitions.push_back(&s);
        if (!tokens.insert(s.token).second) {
          violation("token-order", key, "token " + std::to_string(s.token) + " handed out twice: " + describe(s));
        }
      } else if (s.kind != Kind::kClaim && s.ok) {
        writes.push_back(&s);
      }
    }
    check_token_order(key, acquisitions);
    check_writes(key, acquisitions, writes, tokens);
    check_verdicts(key, k, acquisitions, writes);
    check_final(key, k);
    check_effects(key, k, acquisitions);
    if (!options_.duplicates_allowed) check_rows(key, k);
  }

  // max_token_before() is the largest token of a claim that returned before
  // `time` (0 when none did).
  static std::uint64_t max_token_before(const std::vector<const Step*>& by_return, std::int64_t time) {
    std::uint64_t best = 0;
    for (const Step* a : by_return) {
      if (a->ret_us >= time) break;
      best = std::max(best, a->token);
    }
    return best;
  }

  void check_token_order(std::int64_t key, std::vector<const Step*>& acquisitions) {
    std::sort(acquisitions.begin(), acquisitions.end(),
              [](const Step* a, const Step* b) { return a->ret_us < b->ret_us; });
    for (const Step* b : acquisitions) {
      const std::uint64_t before = max_token_before(acquisitions, b->inv_us);
      if (before >= b->token) {
        violation("token-order", key,
                  describe(*b) + " got a token not above " + std::to_string(before) +
                      ", which an earlier claim of the key had already returned");
      }
    }
  }

  void check_writes(std::int64_t key, const std::vector<const Step*>& acquisitions,
                    const std::vector<const Step*>& writes, const std::set<std::uint64_t>& tokens) {
    for (const Step* w : writes) {
      if (tokens.count(w->token) == 0) {
        violation("stale-write", key, describe(*w) + " was accepted under a token no claim of the key returned");
        continue;
      }
      const std::uint64_t newest = max_token_before(acquisitions, w->inv_us);
      if (newest > w->token) {
        violation("stale-write", key,
                  describe(*w) + " was accepted although token " + std::to_string(newest) +
                      " had been handed out before it began");
      }
    }
  }

  void check_verdicts(std::int64_t key, const KeyState& k, const std::vector<const Step*>& acquisitions,
                      const std::vector<const Step*>& writes) {
    std::vector<const Step*> completes;
    for (const Step* w : writes) {
      const bool final_verdict = w->kind == Kind::kComplete || (w->kind == Kind::kFail && w->fail_kind == "terminal");
      const bool retryable_fail = w->kind == Kind::kFail && !final_verdict;
      if (w->kind == Kind::kComplete) completes.push_back(w);
      if (!final_verdict && !retryable_fail) continue;
      for (const Step* a : acquisitions) {
        if (final_verdict && a->inv_us > w->ret_us) {
          violation("completed-overwritten", key,
                    describe(*a) + " acquired the key after " + describe(*w) + " had settled it");
        }
      }
      for (const Step* other : writes) {
        if (other == w || other->inv_us <= w->ret_us) continue;
        if (final_verdict) {
          violation("completed-overwritten", key, describe(*other) + " was accepted after " + describe(*w));
        } else if (other->token == w->token) {
          violation("stale-write", key, describe(*other) + " was accepted after " + describe(*w) + " ended that token");
        }
      }
    }
    if (completes.size() > 1) {
      violation("completed-overwritten", key,
                "two completions accepted: " + describe(*completes[0]) + " and " + describe(*completes[1]));
    }
    // Every reader must see the one completion.
    std::set<std::uint64_t> attempted;  // tokens some worker tried to complete with
    for (const Step& s : k.steps) {
      if (s.kind == Kind::kComplete) attempted.insert(s.token);
    }
    std::optional<std::uint64_t> expected;
    if (!completes.empty()) expected = completes.front()->token;
    for (const Observation& o : k.completed_seen) {
      if (!expected) {
        if (attempted.count(o.result_token) == 0) {
          violation("completed-overwritten", key,
                    "line " + std::to_string(o.line) + ": a " + o.source + " saw a result of token " +
                        std::to_string(o.result_token) + ", which no worker ever completed with");
        }
        expected = o.result_token;
      } else if (o.result_token != *expected) {
        violation("completed-overwritten", key,
                  "line " + std::to_string(o.line) + ": a " + o.source + " saw the result of token " +
                      std::to_string(o.result_token) + " where token " + std::to_string(*expected) +
                      "'s result was stored before");
      }
    }
  }

  void check_final(std::int64_t key, const KeyState& k) {
    bool claimed = false;
    for (const Step& s : k.steps) claimed = claimed || s.kind == Kind::kClaim;
    if (!claimed) return;
    if (!k.final_read) {
      violation("lost-event", key, "the auditor has no final read of this key");
      return;
    }
    const std::string& st = k.final_read->status;
    if (st == "completed" || st == "failed_terminal") {
      count("final." + st);
      return;
    }
    violation("lost-event", key,
              "line " + std::to_string(k.final_read->line) + ": the key ended '" + st +
                  "' after the faults stopped (expected completed or failed_terminal)");
  }

  // death_us() is when the process of `pid` died, if it was killed or
  // crashed on purpose (kNever otherwise).
  std::int64_t death_us(pid_t pid) const {
    std::int64_t t = kNever;
    if (auto it = kills_.find(pid); it != kills_.end()) t = std::min(t, it->second);
    if (auto it = crashes_.find(pid); it != crashes_.end() && !it->second.empty()) {
      t = std::min(t, it->second.front().time_us);
    }
    return t;
  }

  // live() are the stretches of an effect during which its token's lease was
  // certainly live: from the claim's answer to the lease expiry it returned,
  // and from each accepted extend's answer to (its invocation + lease).
  std::vector<Interval> live(const Effect& e, const KeyState& k) const {
    std::int64_t end = e.end_us;
    if (end == kNever) end = death_us(e.pid);
    std::vector<Interval> out;
    for (const Step& s : k.steps) {
      if (s.token != e.token || !s.ok) continue;
      if (s.acquired() || s.kind == Kind::kExtend) {
        Interval i{std::max(e.begin_us, s.ret_us), std::min(end, s.aux * 1000)};
        if (i.from < i.to) out.push_back(i);
      }
    }
    return out;
  }

  void check_effects(std::int64_t key, KeyState& k, const std::vector<const Step*>& acquisitions) {
    auto& effects = k.effects;
    std::sort(effects.begin(), effects.end(), [](const Effect& a, const Effect& b) { return a.token < b.token; });
    // Two effects at once under live leases.
    std::vector<std::vector<Interval>> windows;
    windows.reserve(effects.size());
    for (const Effect& e : effects) windows.push_back(live(e, k));
    for (std::size_t i = 0; i < effects.size(); ++i) {
      for (std::size_t j = i + 1; j < effects.size(); ++j) {
        if (effects[i].token == effects[j].token) continue;
        for (const Interval& a : windows[i]) {
          for (const Interval& b : windows[j]) {
            if (overlaps(a, b)) {
              violation("concurrent-effects", key,
                        "effects of tokens " + std::to_string(effects[i].token) + " (line " +
                            std::to_string(effects[i].line) + ") and " + std::to_string(effects[j].token) + " (line " +
                            std::to_string(effects[j].line) + ") ran at once under live leases");
            }
          }
        }
      }
    }
    // Duplicates, each attributed to what stopped the previous effect's
    // worker from completing.
    for (std::size_t i = 1; i < effects.size(); ++i) {
      if (effects[i].token == effects[i - 1].token) continue;
      ++report_.duplicates;
      const Step* next_claim = nullptr;
      for (const Step* a : acquisitions) {
        if (a->token == effects[i].token) next_claim = a;
      }
      const std::int64_t until = next_claim != nullptr ? next_claim->ret_us : effects[i].begin_us;
      const std::optional<std::string> cause = attribute(key, effects[i - 1], until, k);
      if (cause) {
        ++report_.duplicate_causes[*cause];
      } else {
        violation("unattributed-duplicate", key,
                  "the effect of token " + std::to_string(effects[i].token) + " (line " +
                      std::to_string(effects[i].line) + ") repeats the effect of token " +
                      std::to_string(effects[i - 1].token) + " (line " + std::to_string(effects[i - 1].line) +
                      ") and no fault explains why the first one did not complete");
      }
    }
  }

  // check_rows() holds a transactional store to its promise: the effect
  // commits with the completion or not at all, so a key has one row exactly
  // when it is COMPLETED, written under the token whose result is stored.
  void check_rows(std::int64_t key, const KeyState& k) {
    const auto& rows = k.rows;
    if (rows.size() > 1) {
      ++report_.committed_duplicates;
      std::string tokens;
      for (const Row& r : rows) tokens += (tokens.empty() ? "" : ", ") + std::to_string(r.token);
      violation("duplicate-effect", key,
                std::to_string(rows.size()) + " committed effects (tokens " + tokens + ", line " +
                    std::to_string(rows[1].line) + ")");
    }
    if (!k.final_read) return;  // lost-event already says so
    const Event& f = *k.final_read;
    const std::string where = "line " + std::to_string(f.line) + ": ";
    if (f.status == "completed") {
      const auto token = static_cast<std::uint64_t>(f.aux);
      if (rows.empty()) {
        violation("torn-commit", key, where + "COMPLETED (token " + std::to_string(f.aux) + ") without its effect");
      } else if (std::none_of(rows.begin(), rows.end(), [&](const Row& r) { return r.token == token; })) {
        violation("torn-commit", key,
                  where + "the stored result is token " + std::to_string(f.aux) + "'s, the committed effect token " +
                      std::to_string(rows.front().token) + "'s");
      }
    } else if (!rows.empty()) {
      violation("torn-commit", key,
                where + "the key ended '" + f.status + "' but an effect under token " +
                    std::to_string(rows.front().token) + " was committed");
    }
  }

  std::optional<std::string> attribute(std::int64_t key, const Effect& prev, std::int64_t until,
                                       const KeyState& k) const {
    bool lease_lost = false;
    bool store_error = false;
    bool late = false;
    std::int64_t lease_end = 0;
    for (const Step& s : k.steps) {
      if (s.token != prev.token) continue;
      if (s.ok && (s.acquired() || s.kind == Kind::kExtend)) lease_end = std::max(lease_end, s.aux * 1000);
    }
    for (const Step& s : k.steps) {
      if (s.token != prev.token || s.kind == Kind::kClaim) continue;
      if (s.kind == Kind::kComplete && s.ok) return std::nullopt;  // it did complete: no excuse
      if (s.kind == Kind::kFail && s.ok) return "failed-retryable";
      if (!s.ok && s.answered() && s.status == "lease_lost") lease_lost = true;
      if (!s.ok && s.answered() && (s.status == "unavailable" || s.status == "timeout")) store_error = true;
      if (s.kind == Kind::kComplete && s.inv_us >= lease_end) late = true;
    }
    if (auto it = crashes_.find(prev.pid); it != crashes_.end()) {
      for (const Event& c : it->second) {
        if (c.key == key && c.token == prev.token) return "crashed:" + c.status;
      }
    }
    // What stopped the worker must have happened between its claim and the
    // takeover: a kill long after the takeover explains nothing. (A worker
    // frozen right after its claim returned starts its effect late.)
    std::int64_t from = prev.begin_us;
    for (const Step& s : k.steps) {
      if (s.acquired() && s.token == prev.token) from = std::min(from, s.inv_us);
    }
    const Interval span{from, std::max(until, from + 1)};
    auto within = [&](std::int64_t t) { return t >= span.from && t <= span.to; };
    if (auto it = kills_.find(prev.pid); it != kills_.end() && within(it->second)) return "killed";
    // Another thread of the same process crashed on purpose: this one died too.
    if (auto it = crashes_.find(prev.pid); it != crashes_.end() && within(it->second.front().time_us)) {
      return "crashed:sibling";
    }
    if (auto it = stops_.find(prev.pid); it != stops_.end()) {
      for (const Interval& s : it->second) {
        if (overlaps(s, span)) return "frozen";
      }
    }
    for (const Step& s : k.steps) {
      if (s.acquired() && s.token == prev.token && s.ret_us >= s.aux * 1000) return "lease-expired-on-arrival";
    }
    if (store_error) return "store-fault";
    for (const Interval& f : store_faults_) {
      if (overlaps(f, span)) return "store-fault";
    }
    if (lease_lost || late || prev.end_us >= lease_end) return "stall";
    return std::nullopt;
  }

  CheckOptions options_;
  Report report_;
  std::map<std::int64_t, KeyState> keys_;
  std::unordered_map<pid_t, std::int64_t> kills_;
  std::unordered_map<pid_t, std::vector<Event>> crashes_;
  std::unordered_map<pid_t, std::vector<Interval>> stops_;
  std::vector<Interval> store_faults_;
};

}  // namespace

Report check(const std::vector<Event>& events, const CheckOptions& options) { return Checker(events, options).run(); }

std::string Report::summary() const {
  std::ostringstream o;
  auto c = [&](const char* name) { return count(name); };
  if (transactional) {
    o << "keys " << keys << ", attempted effects " << effects << ", repeated attempts " << duplicates;
  } else {
    o << "keys " << keys << ", effects " << effects << ", duplicated effects " << duplicates;
  }
  if (!duplicate_causes.empty()) {
    o << " (";
    bool first = true;
    for (const auto& [cause, n] : duplicate_causes) {
      o << (first ? "" : ", ") << cause << " " << n;
      first = false;
    }
    o << ")";
  }
  if (transactional) {
    o << "\ncommitted effects " << committed << ", keys with more than one " << committed_duplicates;
  }
  o << "\nclaims " << c("claims") << ": acquired " << c("acquired") << " (new " << c("acquired.new") << ", takeover "
    << c("acquired.takeover") << ", retry " << c("acquired.retry") << "; lease already expired on arrival "
    << c("acquired.expired_on_arrival") << "), in progress " << c("claim.in_progress") << ", completed "
    << c("claim.completed") << ", failed " << c("claim.failed") << "\n";
  o << "writes: complete " << c("complete.ok") << ", fail " << c("fail.ok.retryable") + c("fail.ok.terminal")
    << ", extend " << c("extend.ok") << ", fenced (lease_lost) " << c("fenced") << ", indeterminate "
    << c("indeterminate") << "\n";
  o << "errors:";
  bool any = false;
  for (const auto& [name, n] : counts) {
    if (name.rfind("errors.", 0) == 0 && name != "errors.lease_lost") {
      o << " " << name.substr(7) << " " << n;
      any = true;
    }
  }
  o << (any ? "" : " none") << "\nfaults:";
  any = false;
  for (const auto& [name, n] : counts) {
    if (name.rfind("faults.", 0) == 0) {
      o << " " << name.substr(7) << " " << n;
      any = true;
    }
  }
  o << (any ? "" : " none") << "\nfinal: completed " << c("final.completed") << ", failed terminally "
    << c("final.failed_terminal") << "\n";
  if (violation_counts.empty()) {
    o << "violations: none\n";
  } else {
    o << "VIOLATIONS:";
    for (const auto& [kind, n] : violation_counts) o << " " << kind << " " << n;
    o << "\n";
    for (const Violation& v : violations) o << "  [" << v.kind << "] key " << v.key << ": " << v.detail << "\n";
  }
  return o.str();
}

}  // namespace idem::chaos
