// C++ exceptions to the exception classes of idem.errors, and back for a
// Python handler's own exception.
#include "bindings.h"

namespace idem::python {

namespace {

py::object error_class(const char* name) {
  // Looked up on each error, not cached: errors are rare and a cached class
  // would have to outlive the interpreter.
  return py::module_::import("idem.errors").attr(name);
}

const char* class_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout: return "StoreUnavailableError";
    case ErrorCode::kLeaseLost: return "LeaseLostError";
    case ErrorCode::kMismatch: return "KeyMismatchError";
    case ErrorCode::kInvalidArgument: return "InvalidEnvelopeError";
    case ErrorCode::kInvalidConfiguration: return "ConfigurationError";
    case ErrorCode::kResultTooLarge: return "ResultTooLargeError";
    default: return "IdemError";
  }
}

}  // namespace

py::object error_object(const Error& error) {
  return error_class(class_for(error.code()))(error.to_string(), std::string(to_string(error.code())));
}

py::object exception_object(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const PyErrorHolder& e) {
    return e.value();
  } catch (const DuplicateEventError& e) {
    py::object result = py::none();
    if (e.cached_result()) result = json_loads(*e.cached_result());
    return error_class("DuplicateEventError")(result, py::arg("key") = e.key(), py::arg("message") = e.what());
  } catch (const EventInProgressError& e) {
    return error_class("EventInProgressError")(
        e.what(), py::arg("key") = e.key(), py::arg("record") = e.record(),
        py::arg("waited_seconds") = static_cast<double>(e.waited().count()) / 1000.0);
  } catch (const TerminalError& e) {
    return error_class("TerminalError")(e.what());
  } catch (const IdemError& e) {
    return error_object(e.error());
  } catch (const py::error_already_set& e) {
    return py::reinterpret_borrow<py::object>(e.value());
  } catch (const std::exception& e) {
    return error_class("IdemError")(e.what());
  } catch (...) {
    return error_class("IdemError")("unknown C++ exception");
  }
}

void rethrow_handler_error(py::error_already_set& error) {
  py::object value = py::reinterpret_borrow<py::object>(error.value());
  const bool terminal = py::isinstance(value, error_class("TerminalError"));
  std::string message;
  try {
    message = terminal ? py::str(value).cast<std::string>()
                       : py::str(value.get_type().attr("__name__")).cast<std::string>() + ": " +
                             py::str(value).cast<std::string>();
  } catch (const std::exception&) {
    message = "a Python exception (its message could not be read)";
  }
  if (terminal) throw TerminalHandlerError(message, std::move(error));
  throw HandlerError(message, std::move(error));
}

void register_errors(py::module_& /*m*/) {
  py::register_exception_translator([](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const PyErrorHolder&) {
    } catch (const IdemError&) {
    } catch (const TerminalError&) {
    } catch (...) {
      std::rethrow_exception(error);  // pybind11's own translators handle the rest
    }
    py::object value = exception_object(error);
    PyErr_SetObject(value.get_type().ptr(), value.ptr());
  });
}

}  // namespace idem::python
