#include "yokan/engine.hpp"

#include "py_common.hpp"

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
      // Sends raw bytes as an RPC: lets the tests feed malformed requests to a
      // provider's decoders. Returns (status, reply meta).
      .def(
          "raw_call",
          [](Engine& e, const std::string& address, uint16_t provider_id, uint16_t rpc,
             const py::bytes& meta, const py::bytes& body, double timeout_ms) {
            std::string m = meta, b = body;
            Reply reply;
            Status s;
            {
              py::gil_scoped_release nogil;
              auto ep = e.lookup(address);
              CallOptions opts;
              opts.timeout_ms = timeout_ms;
              s = e.call(ep, provider_id, rpc, m, {{b.data(), b.size()}}, opts, &reply);
            }
            return py::make_tuple(static_cast<int>(ok(s) ? reply.status : s),
                                  py::bytes(reply.meta));
          },
          py::arg("address"), py::arg("provider_id"), py::arg("rpc"), py::arg("meta"),
          py::arg("body"), py::arg("timeout_ms") = 5000.0)
      // Client connections opening/closing, for yokan-server's log:
      // take_peer_events() -> [(connected, "IP:PORT"), ...], oldest first.
      .def("record_peer_events", &Engine::record_peer_events, py::arg("on") = true)
      .def("take_peer_events",
           [](Engine& e) {
             py::list out;
             for (auto& ev : e.take_peer_events())
               out.append(py::make_tuple(ev.connected, ev.peer));
             return out;
           })
      .def("finalize", &Engine::finalize, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("finalized", &Engine::finalized)
      .def("wait_for_finalize", &Engine::wait_for_finalize, py::arg("timeout_ms") = -1.0,
           py::call_guard<py::gil_scoped_release>());
}

}  // namespace yokan::python
