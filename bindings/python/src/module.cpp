// idem._idem: the extension module under the Python package `idem`. The
// package (bindings/python/idem/) is the public surface; this module is its
// implementation and not meant to be imported directly.
#include "bindings.h"

PYBIND11_MODULE(_idem, m) {
  m.doc() = "The C++ core of the idem package (use `import idem`).";
  idem::python::register_types(m);
  idem::python::register_errors(m);
  idem::python::register_checker(m);
  idem::python::register_guard(m);
  m.def("_shutdown", &idem::python::mark_shutdown, "Called at exit: store threads stop calling into Python.");
}
