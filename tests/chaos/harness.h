// File: tests/chaos/harness.h
//
// A chaos run: bring up a store, run worker processes against it while
// injecting faults on a seeded schedule, stop the faults, let a clean worker
// settle every key and read its final state, then check the merged history.
// See docs/testing.md for the invariants and how to run it.
#pragma once

#include <cstdint>
#include <string>

namespace idem::chaos {

struct RunOptions {
  std::string store = "sqlite";  // see store_names()
  std::uint64_t seed = 0;        // 0: derived from the clock (printed)
  int seconds = 60;              // how long faults are injected
  int workers = 3;               // worker processes
  int threads = 4;               // threads (logical clients) per worker
  int lease_ms = 600;
  // Fault kinds, comma-separated: worker-kill, worker-stop, crash (workers
  // kill themselves before, during or after the effect), store (every fault
  // the store supports), or "none". A kind listed twice is injected twice as
  // often.
  std::string faults = "worker-kill,worker-stop,crash,store";
  int fault_gap_ms = 700;  // mean time between two injected faults
  // Draw fault kinds in shuffled rounds (every kind once per round) instead
  // of independently: a short run with slow faults still reaches every kind.
  bool fault_rounds = false;
  double crash_rate = 0.02;  // per acquired delivery, with `crash` on
  // Per acquired delivery, with `worker-stop` on: the worker SIGSTOPs itself
  // between its effect and its completion (inside the open transaction of a
  // transactional store), and the harness resumes it 1.5 to 3 leases later.
  // A freeze from outside lands there only by chance.
  double freeze_rate = 0;
  std::string out;          // keep the run here (default: a temporary directory)
  bool keep = false;        // keep the directory even when the run passed
  std::string planted_bug;  // "unfenced": workers skip fencing on complete
  // Pass only if the checker reports a violation of this kind (a test that
  // the checker catches the planted bug).
  std::string expect_violation;
  bool require_faults = true;  // fail when an enabled fault never happened
  std::string self;            // this executable, to start workers
};

// run_chaos() returns the process exit status: 0 passed, 1 violations found,
// 2 setup failed, 4 the run did not exercise what it was asked to, 77 a
// server binary is missing (skipped; a failure with IDEM_REQUIRE_SERVERS=1).
int run_chaos(const RunOptions& options);

// check_directory() re-checks the histories of a kept run.
int check_directory(const std::string& dir, bool duplicates_allowed);

}  // namespace idem::chaos
