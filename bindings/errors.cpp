// Maps yokan::Exception to the Python exception classes of
// mochi.yokan.exception. Each compiled module registers its own (module-local)
// translator for what it throws, so no C++ exception has to be caught in a
// different shared object from the one that threw it.
#include "py_common.hpp"

namespace yokan::python {

namespace {

std::string full_message(const Exception& e) {
  std::string base = status_message(e.code());
  std::string what = e.what();
  // Some details already start with the status message (database.cpp adds it
  // for C++ callers): never say it twice.
  if (what == base || what.rfind(base + ": ", 0) == 0) return what;
  return base + ": " + what;
}

// The class is looked up when an error is raised (a sys.modules hit once the
// package is imported), not cached: a cached reference would outlive the
// interpreter's teardown. Errors are off the hot path.
void raise(const char* class_name, const Exception& e) {
  PyObject* mod = PyImport_ImportModule("mochi.yokan.exception");
  PyObject* cls = mod ? PyObject_GetAttrString(mod, class_name) : nullptr;
  Py_XDECREF(mod);
  if (!cls) {
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, full_message(e).c_str());
    return;
  }
  PyObject* exc =
      PyObject_CallFunction(cls, "si", full_message(e).c_str(), static_cast<int>(e.code()));
  if (exc) {
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
  }  // else the failed call's own error is set, which is what Python sees
  Py_DECREF(cls);
}

}  // namespace

void register_error_translator() {
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ServerError& e) {
      raise("ServerException", e);
    } catch (const Exception& e) {
      raise("ClientException", e);
    }
  });
}

}  // namespace yokan::python
