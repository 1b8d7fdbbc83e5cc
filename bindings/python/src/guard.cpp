// idem._idem.Processor and Context: the guard pattern
// (IdempotentEventProcessor::process) and the synchronous decorator's hot
// path (process_with_idempotency with a Python handler).
#include <chrono>

#include "bindings.h"
#include "idem/core/handler.h"

namespace idem::python {

namespace {

using Release = py::call_guard<py::gil_scoped_release>;

std::optional<std::chrono::milliseconds> to_ms(std::optional<double> seconds) {
  if (!seconds) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(*seconds * 1000.0 + 0.5));
}

// The context of one process() call. Its ProcessingContext is dropped by
// close() (or the destructor) with the GIL released, because dropping an
// unfinished claim writes FAILED to the store.
class PyContext {
 public:
  explicit PyContext(ProcessingContext ctx) : ctx_(std::move(ctx)) {}
  PyContext(PyContext&&) noexcept = default;
  PyContext& operator=(PyContext&&) = delete;
  PyContext(const PyContext&) = delete;
  PyContext& operator=(const PyContext&) = delete;
  ~PyContext() { close(); }

  void close() {
    if (!ctx_) return;
    without_gil([this] { ctx_.reset(); });
  }
  ProcessingContext& get() {
    if (!ctx_) throw_error(Error(ErrorCode::kInvalidConfiguration, "the processing context is closed"));
    return *ctx_;
  }
  bool open() const noexcept { return ctx_.has_value(); }

 private:
  std::optional<ProcessingContext> ctx_;
};

py::object run_handler(PyProcessor& self, const Envelope& envelope, const py::object& handler, const py::tuple& args,
                       const py::dict& kwargs, bool skip_on_duplicate, bool return_cached_result) {
  py::object produced;  // the handler's own return value (destroyed with the GIL held)
  ProcessResult outcome;
  {
    py::gil_scoped_release release;
    outcome =
        process_with_idempotency(*self.processor, envelope, [&](const Envelope&, ProcessingContext&) -> std::string {
          py::gil_scoped_acquire gil;
          try {
            produced = handler(*args, **kwargs);
            return json_dumps(produced);
          } catch (py::error_already_set& e) {
            rethrow_handler_error(e);
          }
        });
  }
  if (outcome.disposition != Disposition::kReplayed) return produced;
  if (!skip_on_duplicate) throw DuplicateEventError(outcome.key, ClaimStatus::kCompleted, outcome.result);
  if (!return_cached_result) return py::none();
  return decode_result(outcome.result);
}

}  // namespace

void register_guard(py::module_& m) {
  auto processor =
      py::class_<PyProcessor>(m, "Processor",
                              "The C++ IdempotentEventProcessor; idem.IdempotentEventProcessor wraps it.")
          .def(py::init([](const PyChecker& checker, std::optional<std::string> scope,
                           std::optional<double> wait_for_in_progress, bool heartbeat,
                           std::optional<double> heartbeat_interval) {
                 ProcessorOptions options;
                 options.scope = std::move(scope);
                 options.wait_for_in_progress = to_ms(wait_for_in_progress);
                 options.heartbeat = heartbeat;
                 if (auto interval = to_ms(heartbeat_interval)) options.heartbeat_interval = *interval;
                 return std::make_unique<PyProcessor>(checker.checker, std::move(options));
               }),
               py::arg("checker"), py::arg("scope") = py::none(), py::arg("wait_for_in_progress") = py::none(),
               py::arg("heartbeat") = true, py::arg("heartbeat_interval") = py::none())
          .def(
              "process", [](PyProcessor& p, const Envelope& e) { return PyContext(p.processor->process(e)); },
              py::arg("event"), Release())
          .def(
              "process",
              [](PyProcessor& p, const Envelope& e, double wait) {
                return PyContext(
                    p.processor->process(e, std::chrono::milliseconds(static_cast<std::int64_t>(wait * 1000))));
              },
              py::arg("event"), py::arg("wait_for_in_progress"), Release())
          .def("run", &run_handler, py::arg("event"), py::arg("handler"), py::arg("args"), py::arg("kwargs"),
               py::arg("skip_on_duplicate") = true, py::arg("return_cached_result") = true,
               "Runs handler(*args, **kwargs) once per key, as the synchronous wrapper does; returns its value, "
               "or the cached result of a duplicate (decoded JSON).")
          .def_property_readonly("async_is_native",
                                 [](const PyProcessor& p) { return p.checker->store().async_is_native(); })
          .def_property(
              "offload", [](const PyProcessor& p) { return p.worker != nullptr; },
              [](PyProcessor& p, bool on) { p.set_offload(on); },
              "True: the asynchronous path makes inline store calls on a worker thread, not the caller's.");

  py::class_<PyContext>(m, "Context", "The C++ ProcessingContext; idem.ProcessingContext wraps it.")
      .def_property_readonly("should_process", [](PyContext& c) { return c.get().should_process(); })
      .def_property_readonly("status", [](PyContext& c) { return c.get().status(); })
      .def_property_readonly("is_takeover", [](PyContext& c) { return c.get().is_takeover(); })
      .def_property_readonly("is_unprotected", [](PyContext& c) { return c.get().is_unprotected(); })
      .def_property_readonly("cached_result_json", [](PyContext& c) { return c.get().cached_result(); })
      .def_property_readonly("cached_error", [](PyContext& c) { return c.get().cached_error(); })
      .def_property_readonly("record", [](PyContext& c) { return c.get().record(); })
      .def_property_readonly("key", [](PyContext& c) { return c.get().key(); })
      .def_property_readonly("token", [](PyContext& c) { return c.get().token(); })
      .def_property_readonly("attempt", [](PyContext& c) { return c.get().attempt(); })
      .def_property_readonly("last_checkpoint", [](PyContext& c) { return c.get().last_checkpoint(); })
      .def_property_readonly("finished", [](PyContext& c) { return c.open() && c.get().finished(); })
      .def(
          "mark_completed", [](PyContext& c, const std::string& result) { c.get().mark_completed(result); },
          py::arg("result_json"), Release())
      .def(
          "mark_failed",
          [](PyContext& c, const std::string& error, bool terminal) {
            c.get().mark_failed(error, terminal ? FailureKind::kTerminal : FailureKind::kRetryable);
          },
          py::arg("error"), py::arg("terminal") = false, Release())
      .def(
          "checkpoint",
          [](PyContext& c, const std::string& name, const std::string& data) { c.get().checkpoint(name, data); },
          py::arg("name"), py::arg("data"), Release())
      .def(
          "extend", [](PyContext& c) { c.get().extend(); }, Release())
      .def("close", &PyContext::close);

  register_async(m, processor);
}

}  // namespace idem::python
