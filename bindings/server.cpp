// mochi.yokan._server: the Provider and what this build can host (backends,
// Lua filters). The Engine comes from mochi.yokan._common.
#include "py_common.hpp"
#include "yokan/backend.hpp"
#include "yokan/provider.hpp"

namespace yokan::python {

void bind_server(py::module_& m) {
  py::class_<Provider>(m, "Provider")
      .def(py::init(
               [](std::shared_ptr<Engine> engine, uint16_t provider_id, const std::string& config) {
                 try {
                   py::gil_scoped_release nogil;
                   return std::make_unique<Provider>(std::move(engine), provider_id, config);
                 } catch (const Exception& e) {
                   throw ServerError(e);
                 }
               }),
           py::arg("engine"), py::arg("provider_id"), py::arg("config"))
      .def("config", &Provider::config)
      .def_property_readonly("provider_id", &Provider::provider_id);
}

}  // namespace yokan::python

PYBIND11_MODULE(_server, m) {
  using namespace yokan;
  using namespace yokan::python;
  m.doc() = "mochi-yokan native server (provider, backends)";
  py::module_::import("mochi.yokan._common");  // registers Engine first
  m.def("available_backends", &available_backends);
  m.attr("has_lua") = built_with_lua();
  register_error_translator();
  bind_server(m);
}
