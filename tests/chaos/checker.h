// File: tests/chaos/checker.h
//
// The history checker of the chaos harness: reads a merged history
// (history.h) and proves, or refutes, the promises Idem makes:
//
//   token-order            tokens strictly increase per key: when a claim
//                          acquired and returned before another claim of the
//                          key began, the later one got a larger token
//   stale-write            no complete/fail/extend is accepted under a token
//                          older than one already handed out for the key, or
//                          under a token no claim ever handed out
//   completed-overwritten  once a complete (or a terminal fail) returned, no
//                          claim acquires the key and no write is accepted;
//                          every reader sees the one completion's result
//   lost-event             every key any worker touched ends COMPLETED or
//                          terminally FAILED once the faults stop (the
//                          auditor's final read)
//   concurrent-effects     no two effects on one key overlap in time while
//                          both run under live leases
//   unattributed-duplicate every effect beyond the first one of a key follows
//                          an earlier effect whose worker did not complete
//                          because it was killed, froze, lost the store, or
//                          stalled past its lease; each is counted by cause
//   duplicate-effect       with a transactional store: no key has more than
//                          one committed effect
//   torn-commit            with a transactional store: a key's committed
//                          effect and its record disagree (COMPLETED without
//                          its row, a row under another token than the stored
//                          result's, a row for a key that failed terminally)
//
// With a transactional store (CheckOptions::duplicates_allowed false) the
// effect lines are attempts inside the completing transaction, which roll
// back unless the completion commits: they are still checked for overlap and
// every repeated attempt must be attributed to a fault. The committed effects
// are the `row` lines the auditor read from the store after the run.
//
// Steps whose answer is missing (the process died) are indeterminate: the
// checker never assumes they failed, and never assumes they succeeded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "chaos/history.h"

namespace idem::chaos {

struct CheckOptions {
  // false for a store that writes the effect and the completion in one
  // transaction (PostgreSQL): then the committed effects are the auditor's
  // `row` lines, and a second one for a key is a violation.
  bool duplicates_allowed = true;
  // Keep at most this many violations of each kind in the report.
  std::size_t max_examples = 20;
};

struct Violation {
  std::string kind;  // one of the names in the file comment
  std::int64_t key = -1;
  std::string detail;  // with history line numbers
};

struct Report {
  std::vector<Violation> violations;
  std::map<std::string, std::uint64_t> violation_counts;  // by kind, all of them
  std::map<std::string, std::uint64_t> counts;            // steps, outcomes, faults
  std::map<std::string, std::uint64_t> duplicate_causes;  // see docs/testing.md
  std::uint64_t keys = 0;                                 // keys touched by a claim
  std::uint64_t effects = 0;
  std::uint64_t duplicates = 0;  // effects beyond the first per key
  // Transactional store: committed effects (the auditor's rows), and the
  // keys with more than one.
  std::uint64_t committed = 0;
  std::uint64_t committed_duplicates = 0;
  bool transactional = false;

  bool ok() const { return violation_counts.empty(); }
  bool has(const std::string& kind) const { return violation_counts.count(kind) != 0; }
  std::uint64_t count(const std::string& name) const {
    auto it = counts.find(name);
    return it == counts.end() ? 0 : it->second;
  }
  // summary() is a human-readable report: counts, duplicate causes and the
  // first violations of each kind.
  std::string summary() const;
};

// check() examines a merged history (see merge()).
Report check(const std::vector<Event>& events, const CheckOptions& options = {});

}  // namespace idem::chaos
