// mochi.yokan._common: what the other compiled modules share, bound once
// here: the Engine (every Client and Provider takes one) and the table of
// error codes. _client and _server import this module first so that the
// Engine type is registered before their signatures refer to it.
#include "py_common.hpp"

PYBIND11_MODULE(_common, m) {
  using namespace yokan;
  using namespace yokan::python;
  m.doc() = "mochi-yokan native core: the engine and the error table";

  py::dict errors;
#define YOKAN_ERROR(name, value, message) errors[#name] = py::make_tuple(value, message);
#include "yokan/errors.def"
#undef YOKAN_ERROR
  m.attr("errors") = errors;

  register_error_translator();
  bind_engine(m);
}
