// File: tests/integration/postgres_worker.h
//
// WorkerProcess runs postgres_exactly_once_worker (its protocol is described
// in postgres_exactly_once_worker.cpp) as a child process with pipes on its
// stdin and stdout, and can SIGKILL it at any moment. Used by the
// exactly-once test and by the crash-before-commit test.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace idem::test {

class WorkerProcess {
 public:
  WorkerProcess(const std::string& url, const std::string& table, int number) {
    int to_child[2];
    int from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      const std::string n = std::to_string(number);
      ::execl(IDEM_PG_WORKER_PATH, IDEM_PG_WORKER_PATH, url.c_str(), table.c_str(), n.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_ = to_child[1];
    from_ = from_child[0];
  }
  ~WorkerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(to_);
    ::close(from_);
  }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  int fd() const { return from_; }
  // False when the worker is gone (SIGPIPE must be ignored by the caller).
  bool send(const std::string& line) {
    const std::string data = line + "\n";
    return ::write(to_, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }
  // Reads what is available (blocking until something is); false at end of
  // stream (the worker died).
  bool read_lines(std::vector<std::string>& lines) {
    char buf[4096];
    const ssize_t n = ::read(from_, buf, sizeof buf);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
      lines.push_back(buffer_.substr(0, nl));
      buffer_.erase(0, nl + 1);
    }
    return true;
  }
  // Reads lines until one starts with `prefix`; false if the worker died.
  bool wait_for(const std::string& prefix, std::string* line = nullptr) {
    for (;;) {
      for (std::size_t i = 0; i < pending_.size(); ++i) {
        if (pending_[i].rfind(prefix, 0) == 0) {
          if (line != nullptr) *line = pending_[i];
          pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
          return true;
        }
      }
      if (!read_lines(pending_)) return false;
    }
  }
  void kill_now() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buffer_;
  std::vector<std::string> pending_;
};

}  // namespace idem::test
