// File: tests/support/server_process.h
//
// Test fixtures for integration tests that need a real server process
// (redis-server, postgres, nats-server, ...): a free port, a temporary
// directory, and ServerProcess, an RAII child process that is started in its
// own temp dir on 127.0.0.1, polled for readiness with bounded tries, and
// stopped with SIGTERM, then SIGKILL, then waitpid. It can also be paused
// (SIGSTOP/SIGCONT), killed and restarted, for fault tests.
//
//   std::string bin = idem::test::find_binary("redis-server", "IDEM_REDIS_SERVER");
//   if (bin.empty()) IDEM_SKIP_OR_FAIL("redis-server not found");
//   idem::test::TempDir dir("redis");
//   int port = idem::test::free_port();
//   std::string err;
//   auto server = idem::test::ServerProcess::start(
//       {.binary = bin, .args = {"--port", std::to_string(port)}, .work_dir = dir.path(), .port = port}, &err);
//   ASSERT_TRUE(server) << err;
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace idem::test {

// servers_required() is true when IDEM_REQUIRE_SERVERS=1 (CI): a missing
// server binary is then a failure, not a skip.
bool servers_required();

// IDEM_SKIP_OR_FAIL(msg) skips the current test (or suite, from
// SetUpTestSuite) unless servers are required, in which case it fails.
#define IDEM_SKIP_OR_FAIL(msg)                                                       \
  do {                                                                               \
    if (::idem::test::servers_required()) {                                          \
      FAIL() << (msg) << " (IDEM_REQUIRE_SERVERS=1 turns this skip into a failure)"; \
    } else {                                                                         \
      GTEST_SKIP() << (msg);                                                         \
    }                                                                                \
  } while (0)

// find_binary() returns the path of `name`: the value of the environment
// variable `env_override` when set and non-empty, else the first executable
// `name` on PATH, then in `extra_dirs` (e.g. /usr/lib/postgresql/15/bin).
// Empty when not found.
std::string find_binary(std::string_view name, const char* env_override = nullptr,
                        const std::vector<std::string>& extra_dirs = {});

// free_port() returns a TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

// port_free() is true when 127.0.0.1:port can be bound right now.
bool port_free(int port);

// free_port_where() returns a free port accepted by `ok` (e.g. Redis Cluster
// needs port <= 55535 and port + 10000 free for its bus); 0 if none found.
int free_port_where(const std::function<bool(int)>& ok);

// tcp_ready() is true when 127.0.0.1:port accepts a connection.
bool tcp_ready(int port);

// TempDir is a fresh directory under $TMPDIR (or /tmp), removed with its
// contents on destruction (unless IDEM_KEEP_TEMP=1, for post-mortems).
class TempDir {
 public:
  explicit TempDir(std::string_view tag = "idem");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const noexcept { return path_; }
  // file() returns path()/name.
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

struct ServerSpec {
  std::string binary;             // absolute path (see find_binary)
  std::vector<std::string> args;  // argv[1..]
  std::string work_dir;           // cwd of the child; its log goes to work_dir/<name>.log
  int port = 0;                   // readiness: 127.0.0.1:port accepts TCP (when `ready` is unset)
  std::function<bool()> ready;    // optional custom readiness probe
  std::chrono::milliseconds start_timeout{15'000};
  std::chrono::milliseconds stop_grace{5'000};  // SIGTERM -> SIGKILL delay
  std::string name = "server";                  // for logs and messages
  std::vector<std::string> env;                 // extra NAME=value entries for the child
  // The signal stop() sends first. PostgreSQL wants SIGINT (fast shutdown):
  // SIGTERM is its "smart" shutdown, which waits for clients to leave.
  int stop_signal = 15;  // SIGTERM
};

class ServerProcess {
 public:
  // start() launches the child and waits until it is ready. nullptr on
  // failure, with a message (including the server's log tail) in *error.
  static std::unique_ptr<ServerProcess> start(ServerSpec spec, std::string* error);

  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // stop() sends spec.stop_signal (SIGTERM), waits up to stop_grace, then
  // SIGKILL; always reaps.
  void stop();
  // kill() sends SIGKILL and reaps: a crash, for fault tests.
  void kill();
  // pause() / resume(): SIGSTOP / SIGCONT (a frozen server).
  void pause();
  void resume();
  // restart() starts the same spec again after stop() or kill().
  bool restart(std::string* error);

  bool running() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }
  int port() const noexcept { return spec_.port; }
  const ServerSpec& spec() const noexcept { return spec_; }
  std::string log_path() const;
  // log_tail() returns the last `bytes` of the server's log, for messages.
  std::string log_tail(std::size_t bytes = 4096) const;

 private:
  explicit ServerProcess(ServerSpec spec) : spec_(std::move(spec)) {}
  bool launch(std::string* error);
  void reap(std::chrono::milliseconds grace);

  ServerSpec spec_;
  pid_t pid_ = -1;
  bool paused_ = false;
};

// run_command() runs a short helper command (e.g. openssl, redis-cli) and
// waits for it; returns its exit status (-1 if it could not run) and, when
// `output` is set, its combined stdout and stderr.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(60'000));

}  // namespace idem::test
