// File: bindings/python/src/python_ref.h
//
// The shutdown check and without_gil(). Store threads never hold Python
// objects (answers travel as C++ values, see loop_channel.h); what remains
// is to drop C++ objects whose destructors do store I/O or join threads
// without holding the GIL, and to know when the interpreter is going away.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>

namespace idem::python {

namespace py = pybind11;

// python_alive() is false once the interpreter began shutting down.
bool python_alive() noexcept;
// mark_shutdown() is registered with atexit by the package: it lets the
// InlineWorkers finish what is queued (see inline_worker.h), then marks the
// interpreter as going away.
void mark_shutdown() noexcept;

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
