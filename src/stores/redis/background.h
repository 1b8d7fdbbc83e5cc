// File: src/stores/redis/background.h
//
// Background runs the control plane's blocking work (connecting, TLS and the
// handshake, Sentinel discovery, Cluster slot maps) off the I/O thread, one
// thread per task, so that a node whose connect hangs until its timeout
// delays nobody else. Tasks are rare (one per connect), so a thread each is
// cheap enough and keeps nodes independent.
#pragma once

#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

namespace idem::redis_detail {

class Background {
 public:
  Background() = default;
  ~Background() { join(); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  // run() starts `task` on a new thread; false (and nothing runs) once
  // join() has begun.
  bool run(std::function<void()> task);

  // join() waits for every task; later run() calls are refused.
  void join();

 private:
  struct Task {
    std::thread thread;
    bool finished = false;
  };
  void reap_locked();

  std::mutex mutex_;
  std::condition_variable idle_;
  std::list<Task> tasks_;
  bool closed_ = false;
};

}  // namespace idem::redis_detail
