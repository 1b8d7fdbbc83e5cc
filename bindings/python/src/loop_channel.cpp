#include "loop_channel.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace idem::python {

LoopChannel::LoopChannel() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

LoopChannel::~LoopChannel() {
  if (fd_ >= 0) ::close(fd_);
}

void LoopChannel::push(std::uint64_t id, std::function<py::object()> make) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    wake = items_.empty();
    items_.push_back(Item{id, std::move(make)});
  }
  if (wake) {
    // A full counter (EAGAIN) still leaves the fd readable: nothing is lost.
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
  }
}

py::list LoopChannel::drain() {
  std::uint64_t count = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd_, &count, sizeof count);  // resets it; EAGAIN when spurious
  std::vector<Item> items;
  {
    std::lock_guard lock(mutex_);
    items.swap(items_);
  }
  py::list out;
  for (Item& item : items) {
    try {
      out.append(py::make_tuple(item.id, item.make()));
    } catch (py::error_already_set& e) {
      out.append(py::make_tuple(item.id, py::reinterpret_borrow<py::object>(e.value())));
    }
  }
  return out;
}

}  // namespace idem::python
