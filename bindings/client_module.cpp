// mochi.yokan._client: Client, Database, ShardedDatabase, Collection and the
// key hashing of groups. The Engine comes from mochi.yokan._common.
#include "py_common.hpp"

PYBIND11_MODULE(_client, m) {
  using namespace yokan;
  using namespace yokan::python;
  m.doc() = "mochi-yokan native client (databases, collections)";
  py::module_::import("mochi.yokan._common");  // registers Engine first
  m.attr("KEY_NOT_FOUND") = KEY_NOT_FOUND;
  m.attr("SIZE_TOO_SMALL") = SIZE_TOO_SMALL;
  register_error_translator();
  bind_pending_call(m);
  bind_client(m);
  bind_collection(m);
}
