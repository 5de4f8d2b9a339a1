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
      .def_property_readonly("provider_id", &Provider::provider_id)
      .def(
          "snapshot",
          [](Provider& p, const std::string& dest_path, bool remove_source) {
            try {
              py::gil_scoped_release nogil;
              p.snapshot(dest_path, remove_source);
            } catch (const Exception& e) {
              throw ServerError(e);
            }
          },
          py::arg("dest_path"), py::arg("remove_source") = false)
      .def(
          "restore",
          [](Provider& p, const std::string& src_path, const std::string& new_root,
             const std::string& extra_config) {
            try {
              py::gil_scoped_release nogil;
              p.restore(src_path, new_root, extra_config);
            } catch (const Exception& e) {
              throw ServerError(e);
            }
          },
          py::arg("src_path"), py::arg("new_root"), py::arg("extra_config") = "")
      .def(
          "migrate",
          [](Provider& p, const std::string& dest_address, uint16_t dest_provider_id,
             const std::string& new_root, const std::string& extra_config) {
            try {
              py::gil_scoped_release nogil;
              p.migrate(dest_address, dest_provider_id, new_root, extra_config);
            } catch (const Exception& e) {
              throw ServerError(e);
            }
          },
          py::arg("dest_address"), py::arg("dest_provider_id"), py::arg("new_root") = "",
          py::arg("extra_config") = "");
  // A client-side call (its errors are client exceptions).
  m.def(
      "remote_snapshot",
      [](std::shared_ptr<Engine> engine, const std::string& address, uint16_t provider_id,
         const std::string& dest_path, double timeout_ms) {
        py::gil_scoped_release nogil;
        remote_snapshot(*engine, address, provider_id, dest_path, timeout_ms);
      },
      py::arg("engine"), py::arg("address"), py::arg("provider_id"), py::arg("dest_path"),
      py::arg("timeout_ms") = 0.0);
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
