// Processor.process_async: IdempotentEventProcessor::process_async with the
// answers handed to an asyncio loop. Nothing here blocks the loop: the C++
// callbacks run on store I/O threads (Redis, PostgreSQL) or on the
// processor's InlineWorker (memory, SQLite), and only queue their answer on
// the loop's LoopChannel, without taking the GIL; the loop resolves its
// asyncio futures when it drains the channel.
#include <mutex>

#include "bindings.h"
#include "loop_channel.h"

namespace idem::python {

namespace {

using Release = py::call_guard<py::gil_scoped_release>;
using Completion = IdempotentEventProcessor::Completion;
using AsyncOutcome = IdempotentEventProcessor::AsyncOutcome;

// The acquired side of one process_async() call, handed to Python: the
// Completion and what the handler may read of the context. The context
// itself is only valid until the verdict is stored, so everything Python
// may read later is copied here, and checkpoint() is refused after the
// verdict.
class AsyncGuard {
 public:
  AsyncGuard(ProcessingContext& ctx, Completion completion, std::shared_ptr<InlineWorker> worker)
      : worker_(std::move(worker)),
        ctx_(&ctx),
        completion_(std::move(completion)),
        key_(ctx.key()),
        token_(ctx.token()),
        attempt_(ctx.attempt()),
        takeover_(ctx.is_takeover()),
        unprotected_(ctx.is_unprotected()),
        last_checkpoint_(ctx.last_checkpoint()) {}
  AsyncGuard(const AsyncGuard&) = delete;
  AsyncGuard& operator=(const AsyncGuard&) = delete;
  // The last reference without a verdict abandons the claim (FAILED,
  // retryable): a store write, so not with the GIL held.
  ~AsyncGuard() {
    without_gil([this] { abandon(); });
  }

  void succeed(std::string result) {
    run([completion = take(), result = std::move(result)] { completion.succeed(result); });
  }
  void fail(std::string message, bool terminal) {
    run([completion = take(), message = std::move(message), terminal] {
      if (terminal) {
        completion.fail(std::make_exception_ptr(TerminalError(message)));
      } else {
        completion.fail(std::make_exception_ptr(std::runtime_error(message)));
      }
    });
  }
  // Drops the Completion without a verdict: the claim is abandoned. On a
  // worker, after the calls queued before (a checkpoint still uses ctx).
  void abandon() {
    std::optional<Completion> dropped;
    {
      std::lock_guard lock(mutex_);
      ctx_ = nullptr;
      dropped.swap(completion_);
    }
    if (dropped) run([dropped = std::move(*dropped)] {});
  }
  void checkpoint(std::string name, std::string data, Reply reply) {
    std::lock_guard lock(mutex_);
    if (ctx_ == nullptr) {
      throw_error(Error(ErrorCode::kInvalidConfiguration, "checkpoint after the verdict was given"));
    }
    // ctx stays valid until the verdict is stored, and the verdict is queued
    // (or made) after this call.
    run([ctx = ctx_, name = std::move(name), data = std::move(data), reply = std::move(reply)] {
      ctx->checkpoint_async(name, data, [reply](Status status) {
        reply.send([status = std::move(status)]() -> py::object {
          return status ? py::none() : error_object(status.error());
        });
      });
    });
  }

  const std::string& key() const noexcept { return key_; }
  Token token() const noexcept { return token_; }
  std::uint32_t attempt() const noexcept { return attempt_; }
  bool takeover() const noexcept { return takeover_; }
  bool unprotected() const noexcept { return unprotected_; }
  const std::optional<Checkpoint>& last_checkpoint() const noexcept { return last_checkpoint_; }

 private:
  template <typename Task>
  void run(Task task) {
    if (worker_) {
      worker_->post(std::move(task));
    } else {
      task();
    }
  }

  Completion take() {
    std::lock_guard lock(mutex_);
    if (!completion_) throw_error(Error(ErrorCode::kInvalidConfiguration, "the verdict was already given"));
    Completion completion = std::move(*completion_);
    completion_.reset();
    ctx_ = nullptr;
    return completion;
  }

  std::shared_ptr<InlineWorker> worker_;
  std::mutex mutex_;
  ProcessingContext* ctx_;
  std::optional<Completion> completion_;
  std::string key_;
  Token token_;
  std::uint32_t attempt_;
  bool takeover_;
  bool unprotected_;
  std::optional<Checkpoint> last_checkpoint_;
};

// What Python gets from on_done, built with the GIL held.
struct PyOutcome {
  ClaimStatus status = ClaimStatus::kAcquired;
  std::optional<std::string> result_json;
  std::optional<std::string> error;
  py::object exception;  // None or an exception instance
  std::string key;
  std::optional<IdempotencyRecord> record;
  bool unprotected = false;
};

PyOutcome to_python(AsyncOutcome outcome) {
  PyOutcome out;
  out.status = outcome.status;
  out.result_json = std::move(outcome.result);
  out.error = std::move(outcome.error);
  out.exception = outcome.exception ? exception_object(outcome.exception) : py::none();
  out.key = std::move(outcome.key);
  out.record = std::move(outcome.record);
  out.unprotected = outcome.unprotected;
  return out;
}

void start(IdempotentEventProcessor& processor, const std::shared_ptr<InlineWorker>& worker, const Envelope& envelope,
           const Reply& acquired, const Reply& done);

void process_async(PyProcessor& self, const Envelope& envelope, const std::shared_ptr<LoopChannel>& channel,
                   std::uint64_t acquired_id, std::uint64_t done_id) {
  const Reply acquired{channel, acquired_id};
  const Reply done{channel, done_id};
  py::gil_scoped_release release;
  if (self.worker) {
    // The claim runs on the worker; the handler then runs on the loop.
    self.worker->post([processor = self.processor, worker = self.worker, envelope, acquired, done] {
      start(*processor, worker, envelope, acquired, done);
    });
  } else {
    start(*self.processor, nullptr, envelope, acquired, done);
  }
}

void start(IdempotentEventProcessor& processor, const std::shared_ptr<InlineWorker>& worker, const Envelope& envelope,
           const Reply& acquired, const Reply& done) {
  processor.process_async(
      envelope,
      [acquired, worker](const Envelope&, ProcessingContext& ctx, Completion completion) {
        // If the loop never drains it (closed), the guard goes with the
        // channel, and its destruction abandons the claim (retryable).
        acquired.send(
            [guard = std::make_shared<AsyncGuard>(ctx, std::move(completion), worker)] { return py::cast(guard); });
      },
      [done](AsyncOutcome outcome) {
        done.send([outcome = std::move(outcome)]() mutable { return py::cast(to_python(std::move(outcome))); });
      });
}

}  // namespace

void register_async(py::module_& m, py::class_<PyProcessor>& processor) {
  py::class_<AsyncGuard, std::shared_ptr<AsyncGuard>>(m, "AsyncGuard")
      .def("succeed", &AsyncGuard::succeed, py::arg("result_json"), Release())
      .def("fail", &AsyncGuard::fail, py::arg("error"), py::arg("terminal") = false, Release())
      .def("abandon", &AsyncGuard::abandon, Release())
      .def(
          "checkpoint",
          [](AsyncGuard& g, std::string name, std::string data, std::shared_ptr<LoopChannel> channel,
             std::uint64_t id) {
            g.checkpoint(std::move(name), std::move(data), Reply{std::move(channel), id});
          },
          py::arg("name"), py::arg("data"), py::arg("channel"), py::arg("id"), Release())
      .def_property_readonly("key", &AsyncGuard::key)
      .def_property_readonly("token", &AsyncGuard::token)
      .def_property_readonly("attempt", &AsyncGuard::attempt)
      .def_property_readonly("is_takeover", &AsyncGuard::takeover)
      .def_property_readonly("is_unprotected", &AsyncGuard::unprotected)
      .def_property_readonly("last_checkpoint", &AsyncGuard::last_checkpoint);

  py::class_<PyOutcome>(m, "AsyncOutcome")
      .def_readonly("status", &PyOutcome::status)
      .def_readonly("result_json", &PyOutcome::result_json)
      .def_readonly("error", &PyOutcome::error)
      .def_readonly("exception", &PyOutcome::exception)
      .def_readonly("key", &PyOutcome::key)
      .def_readonly("record", &PyOutcome::record)
      .def_readonly("unprotected", &PyOutcome::unprotected);

  py::class_<LoopChannel, std::shared_ptr<LoopChannel>>(m, "LoopChannel",
                                                        "Answers from store threads to one event loop (an eventfd).")
      .def(py::init<>())
      .def_property_readonly("fd", &LoopChannel::fd)
      .def("drain", &LoopChannel::drain, "[(id, value), ...] queued since the last drain.");

  processor.def("process_async", &process_async, py::arg("event"), py::arg("channel"), py::arg("acquired_id"),
                py::arg("done_id"),
                "Claims without blocking; the AsyncGuard (when acquired) and then the AsyncOutcome arrive on "
                "`channel` under the two ids.");
}

}  // namespace idem::python
