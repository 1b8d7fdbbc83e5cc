// A chaos run; see harness.h.
#include "chaos/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "chaos/checker.h"
#include "chaos/history.h"
#include "chaos/store_env.h"
#include "support/server_process.h"

namespace idem::chaos {
namespace {

std::int64_t now_ms() { return now_us() / 1000; }

// shown() is a store URL with its password (user:password@) masked, for the
// run's output: even a throwaway test password stays out of logs.
std::string shown(std::string url) {
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon != std::string::npos && colon < at) url.replace(colon + 1, at - colon - 1, "***");
  return url;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

struct Slot {
  pid_t pid = -1;
  int incarnation = 0;
  bool stopped = false;
  std::int64_t thaw_at_ms = 0;
};

class Run {
 public:
  Run(const RunOptions& o, std::string dir) : o_(o), dir_(std::move(dir)), rng_(o.seed) {}

  int main() {
    std::string error;
    auto h = HistoryWriter::open(dir_ + "/harness.hist", &error);
    if (!h) return fail_setup(error);
    history_.emplace(std::move(*h));

    bool missing = false;
    env_ = start_store(o_.store, StoreSpec{dir_, o_.lease_ms}, &error, &missing);
    if (!env_) {
      std::cerr << "chaos: cannot start store '" << o_.store << "': " << error << "\n";
      if (missing && !idem::test::servers_required()) {
        std::cerr << "chaos: skipped (IDEM_REQUIRE_SERVERS=1 makes this a failure)\n";
        return 77;
      }
      return 2;
    }
    if (!o_.planted_bug.empty() && o_.planted_bug != "unfenced" &&
        !(o_.planted_bug == "split-commit" && env_->transactional())) {
      return fail_setup("unknown planted bug '" + o_.planted_bug +
                        "' for this store (unfenced; split-commit on a transactional store)");
    }
    choose_faults();
    prefix_ = "chaos:" + std::to_string(o_.seed) + ":" + std::to_string(now_ms()) + ":";
    std::cout << "chaos: store " << o_.store << " (" << shown(env_->url()) << "), seed " << o_.seed << ", "
              << o_.seconds << " s, " << o_.workers << " workers x " << o_.threads << " threads, lease " << o_.lease_ms
              << " ms, faults " << describe_faults() << (o_.planted_bug.empty() ? "" : ", planted bug ")
              << o_.planted_bug << "\n  run directory " << dir_ << std::endl;

    t0_ = now_ms();
    until_ = t0_ + static_cast<std::int64_t>(o_.seconds) * 1000;
    const std::int64_t settle = 20'000 + 20LL * o_.lease_ms;
    slots_.resize(static_cast<std::size_t>(std::max(1, o_.workers)));
    for (std::size_t i = 0; i < slots_.size(); ++i) spawn(i, until_ + settle);

    std::int64_t next_fault = t0_ + gap();
    std::uint64_t injected = 0;
    while (now_ms() < until_) {
      reap(/*respawn=*/true, until_ + settle);
      thaw(/*all=*/false);
      if (!deferred_.empty() && !any_stopped()) {
        if (inject_store(deferred_)) ++injected;
        deferred_.clear();
      }
      if (!kinds_.empty() && now_ms() >= next_fault) {
        if (inject()) ++injected;
        next_fault = now_ms() + gap();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    log(op::kQuiet, "-", 0);
    thaw(/*all=*/true);
    std::cout << "chaos: " << injected << " faults injected; faults stop, workers settle their deliveries" << std::endl;
    if (!wait_workers(until_ + settle)) std::cout << "chaos: some workers did not finish in time (killed)\n";

    // The broker's redelivery of whatever is left: one clean worker settles
    // every key anyone touched, then reads each one's final state.
    const std::vector<std::int64_t> keys = touched_keys();
    const std::string keys_file = dir_ + "/keys.txt";
    {
      std::ofstream out(keys_file);
      for (std::int64_t k : keys) out << k << "\n";
    }
    const std::int64_t drain_deadline = now_ms() + 60'000 + 20LL * o_.lease_ms;
    const pid_t drainer = start_worker("drain", drain_deadline, keys_file);
    const int drained = wait_for(drainer, drain_deadline + 5'000);
    std::cout << "chaos: drained and audited " << keys.size() << " keys (drain worker exit " << drained << ")"
              << std::endl;

    History merged = read_history(dir_);
    for (const std::string& p : merged.problems) std::cout << "chaos: history problem: " << p << "\n";
    CheckOptions co;
    co.duplicates_allowed = !env_->transactional();
    const Report report = check(merged.events, co);
    const std::string summary = report.summary();
    std::cout << summary;
    std::ofstream(dir_ + "/report.txt") << summary;
    std::cout << "reproduce the schedule: tools/chaos.sh --store " << o_.store << " --seed " << o_.seed << " --seconds "
              << o_.seconds << "\n";
    return verdict(report, merged);
  }

 private:
  int fail_setup(const std::string& error) {
    std::cerr << "chaos: " << error << "\n";
    return 2;
  }

  void log(std::string_view what, const std::string& status, std::int64_t aux) {
    Event e;
    e.proc = "harness";
    e.op = std::string(what);
    e.status = status;
    e.aux = aux;
    history_->write(std::move(e));
  }

  std::int64_t gap() {
    return std::uniform_int_distribution<std::int64_t>(o_.fault_gap_ms / 2, o_.fault_gap_ms * 3 / 2)(rng_);
  }

  void choose_faults() {
    for (const std::string& f : split(o_.faults, ',')) {
      if (f == "worker-kill") kinds_.push_back("worker-kill");
      if (f == "worker-stop") {
        kinds_.push_back("worker-stop");
        self_freeze_ = o_.freeze_rate > 0;
      }
      if (f == "crash") crash_ = true;
      if (f == "store") {
        for (const std::string& s : env_->faults()) kinds_.push_back("store:" + s);
      }
    }
  }

  std::string describe_faults() const {
    std::string out;
    for (const auto& k : kinds_) out += (out.empty() ? "" : ",") + k;
    if (crash_) out += out.empty() ? "crash" : ",crash";
    return out.empty() ? "none" : out;
  }

  pid_t start_worker(const std::string& name, std::int64_t deadline, const std::string& keys_file = {}) {
    const std::uint64_t seed = rng_();
    std::vector<std::string> args = {o_.self,         "worker",
                                     "--url",         env_->url(),
                                     "--history",     dir_ + "/" + name + ".hist",
                                     "--prefix",      prefix_,
                                     "--seed",        std::to_string(seed),
                                     "--threads",     std::to_string(o_.threads),
                                     "--t0-ms",       std::to_string(t0_),
                                     "--until-ms",    std::to_string(until_),
                                     "--deadline-ms", std::to_string(deadline),
                                     "--lease-ms",    std::to_string(o_.lease_ms)};
    if (env_->transactional()) args.emplace_back("--transactional");
    if (keys_file.empty()) {
      if (crash_) args.insert(args.end(), {"--crash-rate", std::to_string(o_.crash_rate)});
      if (self_freeze_) args.insert(args.end(), {"--freeze-rate", std::to_string(o_.freeze_rate)});
      if (o_.planted_bug == "unfenced") args.emplace_back("--unfenced");
      if (o_.planted_bug == "split-commit") args.emplace_back("--split-commit");
    } else {
      args.insert(args.end(), {"--keys-file", keys_file, "--audit"});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log_file = dir_ + "/" + name + ".log";
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (pid > 0) log(op::kStart, name, pid);
    return pid;
  }

  void spawn(std::size_t i, std::int64_t deadline) {
    Slot& s = slots_[i];
    s.stopped = false;
    s.pid = start_worker("w" + std::to_string(i) + "-" + std::to_string(s.incarnation++), deadline);
  }

  static std::string how(int status) {
    if (WIFEXITED(status)) return "exit" + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal" + std::to_string(WTERMSIG(status));
    return "other";
  }

  void reap(bool respawn, std::int64_t deadline) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.pid <= 0) continue;
      int status = 0;
      if (::waitpid(s.pid, &status, WNOHANG | WUNTRACED) != s.pid) continue;
      if (WIFSTOPPED(status)) {
        // A worker that froze itself (it wrote its own stop line): resume it
        // past its lease, or at once when the faults are over.
        if (!s.stopped) {
          s.stopped = true;
          s.thaw_at_ms =
              respawn ? now_ms() + std::uniform_int_distribution<int>(o_.lease_ms * 3 / 2, o_.lease_ms * 3)(rng_) : 0;
        }
        if (!respawn) thaw(/*all=*/true);
        continue;
      }
      log(op::kExit, how(status), s.pid);
      s.pid = -1;
      // The broker hands a dead consumer's messages to a new one.
      if (respawn && now_ms() < until_ - 500) spawn(i, deadline);
    }
  }

  void thaw(bool all) {
    for (Slot& s : slots_) {
      if (s.pid > 0 && s.stopped && (all || now_ms() >= s.thaw_at_ms)) {
        log(op::kCont, "-", s.pid);
        ::kill(s.pid, SIGCONT);
        s.stopped = false;
      }
    }
  }

  bool any_stopped() const {
    return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid > 0 && s.stopped; });
  }

  bool inject_store(const std::string& kind) {
    std::string error;
    if (env_->inject(kind.substr(6), rng_, *history_, &error)) return true;
    std::cout << "chaos: store fault " << kind << " did not happen: " << error << std::endl;
    return false;
  }

  bool inject() {
    std::string kind;
    if (o_.fault_rounds) {
      // Shuffled rounds, each kind once per round: a short run reaches every
      // kind after as many faults as there are kinds, even when one of them
      // (a Sentinel failover) takes seconds and a run holds only a few.
      if (round_.empty()) {
        round_ = kinds_;
        std::shuffle(round_.begin(), round_.end(), rng_);
      }
      kind = round_.back();
      round_.pop_back();
    } else {
      kind = kinds_[std::uniform_int_distribution<std::size_t>(0, kinds_.size() - 1)(rng_)];
    }
    if (kind.rfind("store:", 0) == 0) {
      // A fault that ends every client session (a PostgreSQL restart) waits
      // until no worker is frozen: the frozen worker's open transaction would
      // die with its connection, and its stale commit would never reach the
      // server to be fenced, which is what freezing it is for.
      if (env_->ends_sessions(kind.substr(6)) && any_stopped()) {
        if (deferred_.empty()) deferred_ = kind;
        return false;
      }
      return inject_store(kind);
    }
    std::vector<std::size_t> live;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].pid > 0 && !slots_[i].stopped) live.push_back(i);
    }
    if (live.empty()) return false;
    Slot& s = slots_[live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng_)]];
    if (kind == "worker-kill") {
      log(op::kKill, "-", s.pid);
      ::kill(s.pid, SIGKILL);
      return true;
    }
    // Frozen past its lease: when it wakes up its key may belong to another
    // worker, and its completion must be fenced.
    log(op::kStop, "-", s.pid);
    ::kill(s.pid, SIGSTOP);
    s.stopped = true;
    s.thaw_at_ms = now_ms() + std::uniform_int_distribution<int>(o_.lease_ms * 3 / 2, o_.lease_ms * 3)(rng_);
    return true;
  }

  bool wait_workers(std::int64_t deadline) {
    while (now_ms() < deadline + 2'000) {
      reap(/*respawn=*/false, deadline);
      if (std::none_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid > 0; })) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (Slot& s : slots_) {
      if (s.pid <= 0) continue;
      log(op::kKill, "hung", s.pid);
      ::kill(s.pid, SIGKILL);
    }
    reap(/*respawn=*/false, deadline);
    return false;
  }

  int wait_for(pid_t pid, std::int64_t deadline) {
    if (pid <= 0) return -1;
    int status = 0;
    while (now_ms() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        log(op::kExit, how(status), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    log(op::kKill, "hung", pid);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }

  std::vector<std::int64_t> touched_keys() const {
    std::set<std::int64_t> keys;
    for (const Event& e : read_history(dir_).events) {
      if (e.op == op::kClaimInv) keys.insert(e.key);
    }
    return {keys.begin(), keys.end()};
  }

  int verdict(const Report& report, const History& merged) const {
    if (!o_.expect_violation.empty()) {
      if (report.has(o_.expect_violation)) {
        std::cout << "chaos: PASS: the checker caught the planted bug ('" << o_.expect_violation << "' found)\n";
        return 0;
      }
      std::cout << "chaos: FAIL: expected a '" << o_.expect_violation << "' violation, the checker found none\n";
      return 1;
    }
    if (!report.ok() || !merged.problems.empty()) {
      std::cout << "chaos: FAIL: the history violates the invariants (kept in " << dir_ << ")\n";
      return 1;
    }
    if (o_.require_faults) {
      std::vector<std::string> missing;
      auto need = [&](bool ok, const char* what) {
        if (!ok) missing.emplace_back(what);
      };
      std::uint64_t crashes = 0;
      std::map<std::string, std::uint64_t> store_faults;
      for (const auto& [name, n] : report.counts) {
        if (name.rfind("faults.crash.", 0) == 0) crashes += n;
        if (name.rfind("faults.store.", 0) == 0) store_faults[name.substr(13)] += n;
      }
      for (const std::string& k : kinds_) {
        if (k == "worker-kill") need(report.count("faults.kill") > 0, "a worker kill");
        if (k == "worker-stop") {
          need(report.count("faults.stop") > 0, "a worker freeze");
          need(report.count("fenced") > 0, "a fenced (lease_lost) write");
        }
        if (k.rfind("store:", 0) == 0 && store_faults[k.substr(6)] == 0) missing.push_back("a store fault " + k);
      }
      if (crash_) need(crashes > 0, "a worker crash");
      if (!kinds_.empty() || crash_) need(report.count("acquired.takeover") > 0, "a takeover");
      if (!missing.empty()) {
        std::cout << "chaos: FAIL: the run never exercised:";
        for (const auto& m : missing) std::cout << " [" << m << "]";
        std::cout << " (run longer or with more workers)\n";
        return 4;
      }
    }
    std::cout << "chaos: PASS\n";
    return 0;
  }

  RunOptions o_;
  std::string dir_;
  std::mt19937_64 rng_;
  std::optional<HistoryWriter> history_;
  std::unique_ptr<StoreEnv> env_;
  std::vector<std::string> kinds_;
  std::string deferred_;  // a store fault waiting for frozen workers to thaw
  bool self_freeze_ = false;
  std::vector<std::string> round_;  // the kinds still to come in this round
  bool crash_ = false;
  std::string prefix_;
  std::int64_t t0_ = 0;
  std::int64_t until_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace

int run_chaos(const RunOptions& options) {
  RunOptions o = options;
  if (o.seed == 0) o.seed = static_cast<std::uint64_t>(now_us());
  std::string dir = o.out;
  bool temporary = false;
  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "idem-chaos-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "chaos: mkdtemp: " << std::strerror(errno) << "\n";
      return 2;
    }
    dir = pattern;
    temporary = true;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_empty(dir, ec)) {
      std::cerr << "chaos: " << dir << " is not empty\n";
      return 2;
    }
  }
  int rc = 0;
  {
    Run run(o, dir);  // stops the store when it goes out of scope
    rc = run.main();
  }
  const bool passed = rc == 0 && o.expect_violation.empty();
  if (temporary && (passed || !o.expect_violation.empty() || rc == 77) && !o.keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } else {
    std::cout << "chaos: histories kept in " << dir << " (re-check: idem_chaos check " << dir << ")\n";
  }
  return rc;
}

int check_directory(const std::string& dir, bool duplicates_allowed) {
  History merged = read_history(dir);
  for (const std::string& p : merged.problems) std::cout << "history problem: " << p << "\n";
  CheckOptions co;
  co.duplicates_allowed = duplicates_allowed;
  const Report report = check(merged.events, co);
  std::cout << report.summary();
  return report.ok() && merged.problems.empty() ? 0 : 1;
}

}  // namespace idem::chaos
