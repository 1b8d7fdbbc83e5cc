#include "python_ref.h"

#include <atomic>

#include "inline_worker.h"

namespace idem::python {

namespace {
std::atomic<bool> g_shutdown{false};

bool finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}
}  // namespace

bool python_alive() noexcept {
  return !g_shutdown.load(std::memory_order_acquire) && Py_IsInitialized() != 0 && !finalizing();
}

void mark_shutdown() noexcept {
  {
    // Let the workers finish their queued store calls (abandoned claims
    // being marked FAILED, say) while Python still runs; they may need the
    // GIL to hand over an answer.
    py::gil_scoped_release release;
    InlineWorker::quiesce_all(std::chrono::seconds(5));
  }
  g_shutdown.store(true, std::memory_order_release);
}

}  // namespace idem::python
