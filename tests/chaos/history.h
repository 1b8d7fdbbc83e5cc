// File: tests/chaos/history.h
//
// The history of a chaos run: one line per step, written by every process
// (workers and the harness) into its own file, merged afterwards and read by
// the checker (checker.h).
//
// A line is `<time_us> <proc> <op> <key> <token> <status> <aux>`:
//   time_us  CLOCK_REALTIME in microseconds. Realtime, not steady, because
//            stores compute leases from the wall clock (lease_expires_at) and
//            the checker compares the two. All processes share one host.
//   proc     "<pid>.<thread>": one logical client that runs one step at a time
//   op       what happened (see Op below)
//   key      the event key index, -1 when none
//   token    the fencing token the step ran under, 0 when none
//   status   a word: claim status, error code, crash phase, "-" when none
//   aux      a number: lease expiry (ms since epoch), the token a stored result
//            names, a pid for harness faults, 0 when none
//
// Writes are single write(2) calls on an O_APPEND descriptor, made before a
// step starts (`*.inv`) and after it returns (`*.ok`, `*.err`). A SIGKILL
// therefore leaves a truthful prefix: a step with an `inv` and no answer is
// indeterminate (it may or may not have happened), never invented.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace idem::chaos {

// Op names as written in the file.
namespace op {
inline constexpr std::string_view kClaimInv = "claim.inv";
inline constexpr std::string_view kClaimOk = "claim.ok";  // status: acquired|in_progress|completed|failed|mismatch
inline constexpr std::string_view kClaimErr = "claim.err";
inline constexpr std::string_view kEffectBegin = "effect.begin";  // the side effect itself (see worker.cpp)
inline constexpr std::string_view kEffectEnd = "effect.end";
inline constexpr std::string_view kCompleteInv = "complete.inv";
inline constexpr std::string_view kCompleteOk = "complete.ok";
inline constexpr std::string_view kCompleteErr = "complete.err";  // status: the error code
inline constexpr std::string_view kFailInv = "fail.inv";          // status: retryable|terminal
inline constexpr std::string_view kFailOk = "fail.ok";
inline constexpr std::string_view kFailErr = "fail.err";
inline constexpr std::string_view kExtendInv = "extend.inv";
inline constexpr std::string_view kExtendOk = "extend.ok";  // aux: lower bound of the new lease expiry
inline constexpr std::string_view kExtendErr = "extend.err";
inline constexpr std::string_view kGetOk = "get.ok";  // status: absent|processing|completed|failed|failed_terminal
inline constexpr std::string_view kGetErr = "get.err";
inline constexpr std::string_view kFinal = "final";  // like get.ok, read by the auditor after the run
inline constexpr std::string_view kCrash = "crash";  // a worker about to SIGKILL itself; status: phase
// A transactional store: one committed business row of the key, as the
// auditor read it after the run; token: the token the row was written under.
inline constexpr std::string_view kRow = "row";
// Harness steps; aux is the pid concerned.
inline constexpr std::string_view kStart = "start";             // a worker process was started
inline constexpr std::string_view kKill = "kill";               // SIGKILL sent to a worker
inline constexpr std::string_view kStop = "stop";               // SIGSTOP sent to a worker
inline constexpr std::string_view kCont = "cont";               // SIGCONT sent to a worker
inline constexpr std::string_view kExit = "exit";               // a worker was reaped; status: how it ended
inline constexpr std::string_view kStoreFault = "store.fault";  // status: kill|freeze|failover|lock
inline constexpr std::string_view kStoreHeal = "store.heal";    // status: restart|thaw|failover|unlock
inline constexpr std::string_view kQuiet = "quiet";             // faults stop from here on
}  // namespace op

struct Event {
  std::int64_t time_us = 0;
  std::string proc;  // "<pid>.<thread>", or "harness"
  std::string op;
  std::int64_t key = -1;
  std::uint64_t token = 0;
  std::string status = "-";
  std::int64_t aux = 0;
  std::size_t line = 0;  // position in the merged history, for messages

  // pid() is the OS process of `proc` (0 for the harness).
  pid_t pid() const;
};

// now_us() is CLOCK_REALTIME in microseconds.
std::int64_t now_us();

// HistoryWriter appends events to one file. Thread-safe; every event is one
// write(2) of one line, so a SIGKILL at any point leaves whole lines.
class HistoryWriter {
 public:
  // open() creates or appends to `path`; nullopt on failure (errno in *error).
  static std::optional<HistoryWriter> open(const std::string& path, std::string* error);
  HistoryWriter(HistoryWriter&& other) noexcept;
  HistoryWriter& operator=(HistoryWriter&&) = delete;
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;
  ~HistoryWriter();

  // write() stamps the event with now_us() when time_us is 0 and appends it.
  void write(Event event);

 private:
  explicit HistoryWriter(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
};

// format_event() is the line for `e`, without the newline.
std::string format_event(const Event& e);
// parse_event() reads one line; nullopt when it is malformed.
std::optional<Event> parse_event(std::string_view line);

// read_history() reads every *.hist file in `dir` and merges them by time,
// keeping each file's own order for equal times. A malformed line is an error
// except as the very last line of a file (it cannot happen with single
// writes, but a full disk could cut one).
struct History {
  std::vector<Event> events;
  std::vector<std::string> problems;  // unreadable files, malformed lines
};
History read_history(const std::string& dir);
// merge() sorts events by time (stable), numbering them.
void merge(std::vector<Event>& events);

}  // namespace idem::chaos
