// File: bindings/python/src/python_ref.h
//
// What the binding needs to touch Python safely from store threads: the
// shutdown check, a reference that can be dropped from any thread, and a way
// to hand a value to an asyncio loop (loop.call_soon_threadsafe) from a store
// I/O thread.
//
// The rules: a thread other than the interpreter's takes the GIL before it
// touches any Python object, and touches none once the interpreter is going
// away (atexit ran, or finalization started): then references are leaked on
// purpose, because taking the GIL during finalization can hang or end the
// thread.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

namespace idem::python {

namespace py = pybind11;

// python_alive() is false once the interpreter began shutting down.
bool python_alive() noexcept;
// mark_shutdown() is registered with atexit by the package: from then on,
// store threads leave Python alone.
void mark_shutdown() noexcept;

// PyRef is a strong reference to a Python object that may be released on
// any thread (a store I/O thread, the heartbeat thread): it takes the GIL to
// release, and leaks during shutdown.
class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(py::object object) noexcept : ptr_(object.release().ptr()) {}
  PyRef(PyRef&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    if (this != &other) {
      reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
    }
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { reset(); }

  void reset() noexcept;
  py::handle get() const noexcept { return ptr_; }

 private:
  PyObject* ptr_ = nullptr;
};

// LoopTarget is "call this Python callable on that asyncio loop": post()
// may be called from any thread, with or without the GIL.
class LoopTarget {
 public:
  LoopTarget(const py::object& loop, py::object callback)
      : call_soon_(loop.attr("call_soon_threadsafe")), callback_(std::move(callback)) {}

  // post() takes the GIL, builds the argument with make() and schedules
  // callback(argument) on the loop. Nothing happens during shutdown or when
  // the loop is closed (nobody waits for the answer any more).
  template <typename Make>
  void post(Make&& make) const {
    if (!python_alive()) return;
    py::gil_scoped_acquire gil;
    if (!python_alive()) return;
    try {
      call_soon_.get()(callback_.get(), std::forward<Make>(make)());
    } catch (const py::error_already_set&) {
      // The loop is closed: its owner stopped waiting (asyncio.run() ended
      // with this call in flight). Dropping the answer is all there is to do.
    } catch (const std::exception&) {
      // A conversion failed: the waiter is left to its own timeout.
    }
  }

 private:
  PyRef call_soon_;
  PyRef callback_;
};

// without_gil() runs `f` with the GIL released when this thread holds it:
// for destroying C++ objects whose destructors do store I/O or join threads
// that may themselves wait for the GIL.
template <typename F>
void without_gil(F&& f) {
  if (python_alive() && PyGILState_Check() != 0) {
    py::gil_scoped_release release;
    std::forward<F>(f)();
  } else {
    std::forward<F>(f)();
  }
}

}  // namespace idem::python
