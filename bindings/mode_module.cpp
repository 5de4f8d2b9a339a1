// mochi.yokan._mode: the table of mode flags (from yokan/modes.def) and the
// check of which combinations the core accepts.
#include "py_common.hpp"
#include "yokan/common.hpp"

PYBIND11_MODULE(_mode, m) {
  using namespace yokan;
  m.doc() = "mochi-yokan native mode flags";
  py::list modes;
#define YOKAN_MODE(name, value, exported) \
  if (exported) modes.append(py::make_tuple(#name, value));
#include "yokan/modes.def"
#undef YOKAN_MODE
  m.attr("modes") = modes;
  m.def("mode_is_compatible", &mode_is_compatible);
}
