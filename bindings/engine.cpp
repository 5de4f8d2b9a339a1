#include "py_common.hpp"
#include "yokan/engine.hpp"

namespace yokan::python {

void bind_engine(py::module_& m) {
  py::class_<Engine, std::shared_ptr<Engine>>(m, "Engine")
      .def(py::init([](const std::string& address, bool listen, const std::string& config) {
             py::gil_scoped_release nogil;
             return Engine::create(address, listen, config);
           }),
           py::arg("address"), py::arg("listen") = true, py::arg("config") = "")
      .def("self_address", &Engine::self_address)
      .def_property_readonly("listening", &Engine::listening)
      .def_property_readonly("protocol", &Engine::protocol)
      .def("config", &Engine::config)
      // Resolves (and caches) a peer; Python only needs to know that it worked.
      .def(
          "lookup", [](Engine& e, const std::string& address) { e.lookup(address); },
          py::arg("address"), py::call_guard<py::gil_scoped_release>())
      .def("finalize", &Engine::finalize, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("finalized", &Engine::finalized)
      .def("wait_for_finalize", &Engine::wait_for_finalize, py::arg("timeout_ms") = -1.0,
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace yokan::python
