// File: bindings/python/src/loop_channel.h
//
// LoopChannel carries answers from store threads to one asyncio event loop
// without taking the GIL on the store thread: push() queues a C++ value
// under a mutex and, when the queue was empty, writes to an eventfd that the
// loop watches (loop.add_reader). The loop then calls drain(), with the GIL,
// which turns every queued value into a Python object in one go.
//
// Taking the GIL on a store I/O thread for every answer would make that
// thread wait up to the interpreter's switch interval (5 ms) whenever the
// loop is busy running Python; measured, that halved the asynchronous
// decorator's throughput on Redis. Nothing a store thread holds here is a
// Python object, so nothing needs the GIL to be dropped either.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace idem::python {

namespace py = pybind11;

class LoopChannel {
 public:
  LoopChannel();
  ~LoopChannel();
  LoopChannel(const LoopChannel&) = delete;
  LoopChannel& operator=(const LoopChannel&) = delete;

  // The eventfd the loop watches.
  int fd() const noexcept { return fd_; }

  // push() queues (id, make) from any thread, without the GIL. `make` runs
  // in drain() with the GIL held and builds the Python value; whatever it
  // captures must be destructible without the GIL.
  void push(std::uint64_t id, std::function<py::object()> make);

  // drain() (GIL held, on the loop's thread) returns [(id, value), ...].
  py::list drain();

 private:
  struct Item {
    std::uint64_t id;
    std::function<py::object()> make;
  };
  std::mutex mutex_;
  std::vector<Item> items_;
  int fd_ = -1;
};

// Where one answer goes: a channel and the id Python waits on.
struct Reply {
  std::shared_ptr<LoopChannel> channel;
  std::uint64_t id = 0;

  template <typename Make>
  void send(Make&& make) const {
    channel->push(id, std::function<py::object()>(std::forward<Make>(make)));
  }
};

}  // namespace idem::python
