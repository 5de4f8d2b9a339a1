// The native Collection class; python/mochi/yokan/collection.py builds the
// public API on it. Sizes come back in the Python convention (python_sizes).
// The GIL is released around every RPC.
#include "yokan/collection.hpp"

#include "py_common.hpp"

namespace yokan::python {

namespace {

py::list int_list(const std::vector<uint64_t>& v) {
  py::list out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = py::int_(v[i]);
  return out;
}

DocIds id_list(py::handle ids) {
  DocIds out;
  for (auto id : py::reinterpret_borrow<py::sequence>(ids)) out.push_back(id.cast<uint64_t>());
  return out;
}

std::vector<Destination> writable(ByteViews& views, py::handle seq) {
  std::vector<Destination> out;
  if (seq.is_none()) return out;
  for (auto b : py::reinterpret_borrow<py::sequence>(seq)) {
    auto [p, n] = views.write(b, "document buffer");
    out.push_back({p, n});
  }
  return out;
}

}  // namespace

void bind_collection(py::module_& m) {
  py::class_<Collection>(m, "Collection")
      .def(py::init<Database, std::string>(), py::arg("database"), py::arg("name"))
      .def_property_readonly("name", &Collection::name)
      .def("create", &Collection::create, py::arg("mode"), py::arg("timeout_ms"),
           py::call_guard<py::gil_scoped_release>())
      .def("drop", &Collection::drop, py::arg("mode"), py::arg("timeout_ms"),
           py::call_guard<py::gil_scoped_release>())
      .def("exists", &Collection::exists, py::arg("mode"), py::arg("timeout_ms"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "info",
          [](const Collection& c, int32_t mode, double t) {
            Collection::Info info;
            {
              py::gil_scoped_release nogil;
              info = c.info(mode, t);
            }
            return py::make_tuple(info.size, info.next_id);
          },
          py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "store",
          [](const Collection& c, py::handle docs, int32_t mode, double t) {
            ByteViews views;
            Keys d = views.read_list(docs, "document");
            DocIds ids;
            {
              py::gil_scoped_release nogil;
              ids = c.store(mode, d, t);
            }
            return int_list(ids);
          },
          py::arg("documents"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "update",
          [](const Collection& c, py::handle ids, py::handle docs, int32_t mode, double t) {
            DocIds i = id_list(ids);
            ByteViews views;
            Keys d = views.read_list(docs, "document");
            py::gil_scoped_release nogil;
            c.update(mode, i, d, t);
          },
          py::arg("ids"), py::arg("documents"), py::arg("mode"), py::arg("timeout_ms"))
      // layout: 0 = one buffer per id, 1 = packed, 2 = allocate. Returns the
      // sizes and, for layout 2, the documents as a list of bytes (None: absent).
      .def(
          "load",
          [](const Collection& c, py::handle ids, int layout, py::handle buffers, int32_t mode,
             double t) {
            DocIds i = id_list(ids);
            ByteViews views;
            auto out = writable(views, buffers);
            Collection::LoadResult r;
            {
              py::gil_scoped_release nogil;
              r = c.load(mode, i, static_cast<Collection::Layout>(layout), out, t);
            }
            return py::make_tuple(python_sizes(r.sizes),
                                  layout == 2 ? split_bytes(r.data.view(), r.sizes) : py::list());
          },
          py::arg("ids"), py::arg("layout"), py::arg("buffers"), py::arg("mode"),
          py::arg("timeout_ms"))
      .def(
          "length",
          [](const Collection& c, py::handle ids, int32_t mode, double t) {
            DocIds i = id_list(ids);
            std::vector<uint64_t> sizes;
            {
              py::gil_scoped_release nogil;
              sizes = c.length(mode, i, t);
            }
            return python_sizes(sizes);
          },
          py::arg("ids"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "erase",
          [](const Collection& c, py::handle ids, int32_t mode, double t) {
            DocIds i = id_list(ids);
            py::gil_scoped_release nogil;
            c.erase(mode, i, t);
          },
          py::arg("ids"), py::arg("mode"), py::arg("timeout_ms"))
      // Returns (ids, sizes, documents as a list of bytes for layout 2).
      .def(
          "list",
          [](const Collection& c, uint64_t start, py::handle filter, uint64_t count, int layout,
             py::handle buffers, int32_t mode, double t) {
            ByteViews views;
            auto f = views.read(filter, "filter");
            auto out = writable(views, buffers);
            Collection::ListResult r;
            {
              py::gil_scoped_release nogil;
              r = c.list(mode, start, f, count, static_cast<Collection::Layout>(layout), out, t);
            }
            return py::make_tuple(int_list(r.ids), python_sizes(r.sizes),
                                  layout == 2 ? split_bytes(r.data.view(), r.sizes) : py::list());
          },
          py::arg("start_id"), py::arg("filter"), py::arg("count"), py::arg("layout"),
          py::arg("buffers"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "list_start",
          [](const Collection& c, uint64_t start, py::handle filter, uint64_t count, int32_t mode,
             double t) {
            ByteViews views;
            auto f = views.read(filter, "filter");
            py::gil_scoped_release nogil;
            return c.list_start(mode, start, f, count, t);
          },
          py::arg("start_id"), py::arg("filter"), py::arg("count"), py::arg("mode"),
          py::arg("timeout_ms"));

  // A page of documents on its way (Collection.list_start): wait() ->
  // (ids, sizes, documents) as list(..., layout=2) returns them.
  py::class_<Collection::PendingList>(m, "PendingDocList")
      .def("wait", [](Collection::PendingList& p) {
        Collection::ListResult r;
        {
          py::gil_scoped_release nogil;
          r = p.finish();
        }
        return py::make_tuple(int_list(r.ids), python_sizes(r.sizes),
                              split_bytes(r.data.view(), r.sizes));
      });
}

}  // namespace yokan::python
