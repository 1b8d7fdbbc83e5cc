// File: tests/chaos/worker.h
//
// A chaos worker: one OS process with a few threads that play an
// at-least-once consumer against one store, and record every step into a
// history file (history.h). The harness starts several, kills and freezes
// them; see docs/testing.md.
//
// The event stream: keys are numbered; key k is "published" at
// t0 + k * key_interval. Every delivery picks one of the `window` newest
// keys, so workers overlap on the same keys at the same moment, deliveries
// repeat and arrive out of order. A delivery that cannot be settled now (key
// in progress, store error, lease lost) is redelivered later by the worker
// itself, like a broker's nak.
#pragma once

#include <cstdint>
#include <string>

namespace idem::chaos {

struct WorkerOptions {
  std::string url;                // the store
  std::string history;            // this process's history file
  std::string prefix = "chaos:";  // store key = prefix + key number
  std::uint64_t seed = 1;
  int threads = 4;
  // The stream (ignored with keys_file).
  std::int64_t t0_ms = 0;     // when key 0 was published (epoch ms)
  int key_interval_ms = 20;   // one new key per interval
  int window = 24;            // deliveries pick among this many newest keys
  std::int64_t until_ms = 0;  // take no new delivery after this (epoch ms)
  // Drain mode: deliver each key of this file (one number a line) until it
  // is settled, then (with audit) read every one and record its final state.
  std::string keys_file;
  bool audit = false;
  std::int64_t deadline_ms = 0;  // give up and exit 3 after this (epoch ms)

  int lease_ms = 600;
  int effect_min_ms = 4;  // the effect lasts between min and max
  int effect_max_ms = 30;
  int pause_max_ms = 10;    // idle time between deliveries
  double crash_rate = 0;    // per acquired delivery: SIGKILL itself at a random phase
  double fail_rate = 0.05;  // per acquired delivery: a retryable handler failure
  int terminal_every = 37;  // keys k with k % terminal_every == 0 fail terminally (0: none)
  double extend_rate = 0.3;
  // The planted bug (a test of the checker): complete through a store
  // wrapper that forces a stale completion in (see unfenced_store.h).
  bool unfenced = false;
  // PostgreSQL transactional mode: the effect is a row of the effects table
  // (store_env.h) written in the transaction that completes the key; the
  // auditor also records every committed row of each key.
  bool transactional = false;
  // The planted bug of transactional mode: the row commits on its own when
  // the effect starts, and the completion is a separate call afterwards.
  bool split_commit = false;
};

// run_worker() returns the process exit status: 0 when every delivery it
// took was settled, 2 when the store cannot be opened, 3 past the deadline.
int run_worker(const WorkerOptions& options);

}  // namespace idem::chaos
