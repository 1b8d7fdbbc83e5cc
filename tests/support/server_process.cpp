// ServerProcess and friends; see server_process.h.
#include "support/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace idem::test {
namespace {

using Clock = std::chrono::steady_clock;

bool executable(const std::string& path) { return !path.empty() && ::access(path.c_str(), X_OK) == 0; }

std::vector<char*> c_argv(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Waits for `pid` up to `timeout`; true when it exited (and was reaped).
bool wait_exit(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // not our child any more
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

bool servers_required() {
  const char* v = std::getenv("IDEM_REQUIRE_SERVERS");
  return v != nullptr && std::string_view(v) == "1";
}

std::string find_binary(std::string_view name, const char* env_override, const std::vector<std::string>& extra_dirs) {
  if (env_override != nullptr) {
    if (const char* v = std::getenv(env_override); v != nullptr && *v != '\0') {
      return executable(v) ? std::string(v) : std::string();
    }
  }
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  for (const std::string& dir : dirs) {
    std::string candidate = dir + "/" + std::string(name);
    if (executable(candidate)) return candidate;
  }
  return {};
}

namespace {
// A 127.0.0.1 address: tests never listen on or connect to anything else.
sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  return addr;
}
}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr = loopback(0);  // port 0: the kernel picks a free one
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = loopback(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

int free_port_where(const std::function<bool(int)>& ok) {
  for (int i = 0; i < 1000; ++i) {
    const int port = free_port();
    if (port > 0 && ok(port)) return port;
  }
  return 0;
}

bool tcp_ready(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = loopback(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

TempDir::TempDir(std::string_view tag) {
  const char* base = std::getenv("TMPDIR");
  std::string templ =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/idem-" + std::string(tag) + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << templ << ") failed: " << std::strerror(errno);
  }
  path_ = templ;
}

TempDir::~TempDir() {
  const char* keep = std::getenv("IDEM_KEEP_TEMP");
  if (keep != nullptr && std::string_view(keep) == "1") return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<ServerProcess> ServerProcess::start(ServerSpec spec, std::string* error) {
  std::unique_ptr<ServerProcess> p(new ServerProcess(std::move(spec)));
  if (!p->launch(error)) return nullptr;
  return p;
}

ServerProcess::~ServerProcess() { stop(); }

std::string ServerProcess::log_path() const { return spec_.work_dir + "/" + spec_.name + ".log"; }

std::string ServerProcess::log_tail(std::size_t bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  if (all.size() > bytes) all = all.substr(all.size() - bytes);
  return all;
}

bool ServerProcess::launch(std::string* error) {
  auto fail = [&](std::string msg) {
    if (error != nullptr) *error = std::move(msg);
    return false;
  };
  if (!executable(spec_.binary)) return fail("not an executable: '" + spec_.binary + "'");
  std::vector<std::string> args;
  args.push_back(spec_.binary);
  args.insert(args.end(), spec_.args.begin(), spec_.args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  env.insert(env.end(), spec_.env.begin(), spec_.env.end());
  std::vector<char*> argv = c_argv(args);
  std::vector<char*> envp = c_argv(env);
  const std::string log = log_path();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: die with the test process, so a crashed test leaves no server.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    if (::chdir(spec_.work_dir.c_str()) != 0) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  pid_ = pid;
  paused_ = false;
  const auto deadline = Clock::now() + spec_.start_timeout;
  for (int tries = 0;; ++tries) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return fail(spec_.name + " exited during startup (status " + std::to_string(status) + "); log:\n" + log_tail());
    }
    const bool ready = spec_.ready ? spec_.ready() : (spec_.port > 0 && tcp_ready(spec_.port));
    if (ready) return true;
    if (Clock::now() >= deadline) {
      stop();
      return fail(spec_.name + " not ready after " + std::to_string(spec_.start_timeout.count()) + " ms (" +
                  std::to_string(tries) + " probes); log:\n" + log_tail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(tries < 20 ? 10 : 50));
  }
}

void ServerProcess::reap(std::chrono::milliseconds grace) {
  int status = 0;
  if (!wait_exit(pid_, grace, &status)) {
    ::kill(pid_, SIGKILL);
    wait_exit(pid_, std::chrono::milliseconds(10'000), &status);
  }
  pid_ = -1;
  paused_ = false;
}

void ServerProcess::stop() {
  if (pid_ <= 0) return;
  if (paused_) ::kill(pid_, SIGCONT);  // a stopped process cannot handle SIGTERM
  ::kill(pid_, spec_.stop_signal);
  reap(spec_.stop_grace);
}

void ServerProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  reap(std::chrono::milliseconds(10'000));
}

void ServerProcess::pause() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGSTOP);
  paused_ = true;
}

void ServerProcess::resume() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  paused_ = false;
}

bool ServerProcess::restart(std::string* error) {
  stop();
  return launch(error);
}

int run_command(const std::vector<std::string>& argv_in, std::string* output, std::chrono::milliseconds timeout) {
  if (argv_in.empty()) return -1;
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv = c_argv(args);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return -1;
  }
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::dup2(pipefd[1], 2);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{pipefd[0], POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output != nullptr) *output = std::move(out);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -1;
}

}  // namespace idem::test
