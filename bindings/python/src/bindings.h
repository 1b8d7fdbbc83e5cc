// File: bindings/python/src/bindings.h
//
// What the parts of the extension module `idem._idem` share: the Python
// helpers they call (JSON, the status enum, datetimes, the exception
// classes of idem.errors), the wrapped checker and processor, and the
// registration function of each part.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "idem/core/checker.h"
#include "idem/core/error.h"
#include "idem/core/processor.h"
#include "idem/core/record.h"
#include "inline_worker.h"
#include "python_ref.h"

namespace idem::python {

// --- Python helpers (call with the GIL held) ----------------------------------
// JSON as the package writes it (idem._json): compact, UTF-8, no NaN.
py::object json_loads(std::string_view text);
std::string json_dumps(const py::handle& value);
// A result as Python sees it: decoded JSON, None when absent.
py::object decode_result(const std::optional<std::string>& text);
// idem.status.ProcessingStatus member for `status`.
py::object status_object(ProcessingStatus status);
// An aware UTC datetime.
py::object datetime_object(Timestamp time);

// --- Exceptions ---------------------------------------------------------------
// exception_object() builds the idem.errors exception instance matching a C++
// exception (or restores a Python handler's own exception). The translator
// registered by register_errors() raises it; the asynchronous paths hand it
// to a future instead.
py::object exception_object(const std::exception_ptr& error);
py::object error_object(const Error& error);

// A Python handler's exception on its way through the C++ guard: what()
// is computed with the GIL held, and the original Python exception comes
// back out unchanged at the other end.
class PyErrorHolder {
 public:
  explicit PyErrorHolder(py::error_already_set error) : error_(std::move(error)) {}
  virtual ~PyErrorHolder() = default;
  PyErrorHolder(const PyErrorHolder&) = default;
  PyErrorHolder& operator=(const PyErrorHolder&) = delete;
  // The exception instance (GIL held).
  py::object value() const { return py::reinterpret_borrow<py::object>(error_.value()); }

 private:
  py::error_already_set error_;
};
class HandlerError : public std::runtime_error, public PyErrorHolder {
 public:
  HandlerError(const std::string& message, py::error_already_set error)
      : std::runtime_error(message), PyErrorHolder(std::move(error)) {}
};
class TerminalHandlerError : public TerminalError, public PyErrorHolder {
 public:
  TerminalHandlerError(const std::string& message, py::error_already_set error)
      : TerminalError(message), PyErrorHolder(std::move(error)) {}
};
// Throws HandlerError or TerminalHandlerError for the Python exception in
// `error` (GIL held): an idem.errors.TerminalError is terminal.
[[noreturn]] void rethrow_handler_error(py::error_already_set& error);

// --- Wrapped core objects -----------------------------------------------------
// The checker as Python holds it. Its destructor drops the C++ checker with
// the GIL released: the last reference closes the store, which joins store
// threads that may be waiting for the GIL to deliver a callback.
struct PyChecker {
  explicit PyChecker(std::shared_ptr<IdempotencyChecker> c) : checker(std::move(c)) {}
  ~PyChecker() {
    without_gil([this] { checker.reset(); });
  }
  PyChecker(const PyChecker&) = delete;
  PyChecker& operator=(const PyChecker&) = delete;
  std::shared_ptr<IdempotencyChecker> checker;
};

// The processor as Python holds it. Queued asynchronous calls share the C++
// processor, so it lives until the last of them ran.
struct PyProcessor {
  PyProcessor(std::shared_ptr<IdempotencyChecker> c, ProcessorOptions options)
      : checker(std::move(c)), processor(std::make_shared<IdempotentEventProcessor>(checker, std::move(options))) {
    set_offload(!checker->store().async_is_native());
  }
  ~PyProcessor() {
    without_gil([this] {
      set_offload(false);
      processor.reset();
      checker.reset();
    });
  }
  PyProcessor(const PyProcessor&) = delete;
  PyProcessor& operator=(const PyProcessor&) = delete;

  // With offload (the default for stores that answer inline), the
  // asynchronous path makes its store calls on an InlineWorker instead of
  // the calling thread (the event loop's).
  void set_offload(bool on) {
    if (on && !worker) worker = InlineWorker::start();
    if (!on && worker) {
      worker->stop();
      worker.reset();
    }
  }

  std::shared_ptr<IdempotencyChecker> checker;
  std::shared_ptr<IdempotentEventProcessor> processor;
  std::shared_ptr<InlineWorker> worker;  // null: calls are made on the caller's thread
};

void register_types(py::module_& m);
void register_errors(py::module_& m);
void register_checker(py::module_& m);
void register_guard(py::module_& m);
void register_async(py::module_& m, py::class_<PyProcessor>& processor);

}  // namespace idem::python
