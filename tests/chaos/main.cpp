// idem_chaos: the chaos harness of Idem (see docs/testing.md).
//
//   idem_chaos run --store sqlite --seconds 60 --seed 42   a run, checked
//   idem_chaos check DIR                                   re-check a kept run
//   idem_chaos worker ...                                  (started by `run`)
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <iostream>
#include <string>

#include "chaos/harness.h"
#include "chaos/store_env.h"
#include "chaos/worker.h"

namespace {

std::string self_path(const char* argv0) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return argv0;
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"idem_chaos: worker processes against one store, faults on a seeded schedule, a checked history"};
  app.require_subcommand(1);

  idem::chaos::RunOptions run;
  std::string stores;
  for (const auto& s : idem::chaos::store_names()) stores += (stores.empty() ? "" : ", ") + s;
  auto* r = app.add_subcommand("run", "run workers against a store while injecting faults, then check the history");
  r->add_option("--store", run.store, "store: " + stores)->capture_default_str();
  r->add_option("--seed", run.seed, "seed of the fault schedule and the workers (0: from the clock)");
  r->add_option("--seconds", run.seconds, "how long faults are injected")->capture_default_str();
  r->add_option("--workers", run.workers, "worker processes")->capture_default_str();
  r->add_option("--threads", run.threads, "threads per worker")->capture_default_str();
  r->add_option("--lease-ms", run.lease_ms, "lease of every claim")->capture_default_str();
  r->add_option("--faults", run.faults,
                "worker-kill,worker-stop,crash,store or none (a kind listed twice comes twice as often)")
      ->capture_default_str();
  r->add_option("--fault-gap-ms", run.fault_gap_ms, "mean time between faults")->capture_default_str();
  r->add_option("--freeze-rate", run.freeze_rate,
                "with worker-stop: chance a worker freezes itself between its effect and its completion, per acquired "
                "delivery")
      ->capture_default_str();
  r->add_flag("--fault-rounds", run.fault_rounds, "draw fault kinds in shuffled rounds, every kind once per round");
  r->add_option("--crash-rate", run.crash_rate, "chance a worker kills itself per acquired delivery")
      ->capture_default_str();
  r->add_option("--out", run.out, "keep the run in this (empty or new) directory");
  r->add_flag("--keep", run.keep, "keep the run directory even when it passed");
  r->add_option("--planted-bug", run.planted_bug,
                "unfenced: workers complete through a store that skips fencing; split-commit (postgres): the effect "
                "commits on its own, before a separate completion");
  r->add_option("--expect-violation", run.expect_violation,
                "pass only if the checker reports this violation kind (for --planted-bug)");
  bool no_require = false;
  r->add_flag("--no-require-faults", no_require, "pass even when an enabled fault never happened");

  std::string check_dir;
  bool no_duplicates = false;
  auto* c = app.add_subcommand("check", "check the histories of a kept run directory");
  c->add_option("dir", check_dir, "the run directory")->required();
  c->add_flag("--no-duplicates", no_duplicates,
              "a transactional store: the committed effects are the auditor's rows, one per completed key");

  idem::chaos::WorkerOptions worker;
  auto* w = app.add_subcommand("worker", "one worker process (started by `run`)");
  w->add_option("--url", worker.url)->required();
  w->add_option("--history", worker.history)->required();
  w->add_option("--prefix", worker.prefix);
  w->add_option("--seed", worker.seed);
  w->add_option("--threads", worker.threads);
  w->add_option("--t0-ms", worker.t0_ms);
  w->add_option("--until-ms", worker.until_ms);
  w->add_option("--deadline-ms", worker.deadline_ms);
  w->add_option("--lease-ms", worker.lease_ms);
  w->add_option("--crash-rate", worker.crash_rate);
  w->add_option("--freeze-rate", worker.freeze_rate);
  w->add_option("--keys-file", worker.keys_file);
  w->add_flag("--audit", worker.audit);
  w->add_flag("--unfenced", worker.unfenced);
  w->add_flag("--transactional", worker.transactional);
  w->add_flag("--split-commit", worker.split_commit);

  CLI11_PARSE(app, argc, argv);
  if (r->parsed()) {
    run.require_faults = !no_require;
    run.self = self_path(argv[0]);
    return idem::chaos::run_chaos(run);
  }
  if (c->parsed()) return idem::chaos::check_directory(check_dir, !no_duplicates);
  return idem::chaos::run_worker(worker);
}
