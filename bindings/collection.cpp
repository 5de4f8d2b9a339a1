// The native Collection class; python/mochi/yokan/collection.py builds the
// public API on it. Sizes come back in the Python convention (python_sizes).
// The GIL is released around every RPC.
#include "yokan/collection.hpp"

#include "pending_call.hpp"
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

py::object load_result(Collection::LoadResult& r, int layout) {
  return py::make_tuple(python_sizes(r.sizes),
                        layout == 2 ? split_bytes(r.data.view(), r.sizes) : py::list());
}

py::object list_result(Collection::ListResult& r, int layout) {
  return py::make_tuple(int_list(r.ids), python_sizes(r.sizes),
                        layout == 2 ? split_bytes(r.data.view(), r.sizes) : py::list());
}

// The two-step calls of Collection, as Database's (bindings/client.cpp):
// the blocking binding's arguments plus (completions, cookie); wait()
// returns what the blocking binding returns.
void bind_start_calls(py::class_<Collection>& cls) {
  using Queue = std::shared_ptr<CompletionQueue>;
  cls.def(
         "create_start",
         [](const Collection& c, int32_t mode, double t, const Queue& q, uint64_t cookie) {
           Started<void> s;
           {
             py::gil_scoped_release nogil;
             s = c.create_start(mode, t, completion(q, cookie));
           }
           return pending(std::move(s), 0);
         },
         py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "drop_start",
          [](const Collection& c, int32_t mode, double t, const Queue& q, uint64_t cookie) {
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = c.drop_start(mode, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "exists_start",
          [](const Collection& c, int32_t mode, double t, const Queue& q, uint64_t cookie) {
            Started<bool> s;
            {
              py::gil_scoped_release nogil;
              s = c.exists_start(mode, t, completion(q, cookie));
            }
            return pending(std::move(s), [](bool& b) { return py::object(py::bool_(b)); });
          },
          py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "info_start",
          [](const Collection& c, int32_t mode, double t, const Queue& q, uint64_t cookie) {
            Started<Collection::Info> s;
            {
              py::gil_scoped_release nogil;
              s = c.info_start(mode, t, completion(q, cookie));
            }
            return pending(std::move(s), [](Collection::Info& i) {
              return py::object(py::make_tuple(i.size, i.next_id));
            });
          },
          py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "store_start",
          [](const Collection& c, py::handle docs, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            ByteViews views;
            Keys d = views.read_list(docs, "document");
            Started<DocIds> s;
            {
              py::gil_scoped_release nogil;
              s = c.store_start(mode, d, t, completion(q, cookie));
            }
            return pending(std::move(s), [](DocIds& ids) { return py::object(int_list(ids)); });
          },
          py::arg("documents"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "update_start",
          [](const Collection& c, py::handle ids, py::handle docs, int32_t mode, double t,
             const Queue& q, uint64_t cookie) {
            DocIds i = id_list(ids);
            ByteViews views;
            Keys d = views.read_list(docs, "document");
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = c.update_start(mode, i, d, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("ids"), py::arg("documents"), py::arg("mode"), py::arg("timeout_ms"),
          py::arg("completions"), py::arg("cookie"))
      .def(
          "load_start",
          [](const Collection& c, py::handle ids, int layout, py::handle buffers, int32_t mode,
             double t, const Queue& q, uint64_t cookie) {
            DocIds i = id_list(ids);
            auto outputs = std::make_unique<ByteViews>();
            auto out = writable(*outputs, buffers);
            Started<Collection::LoadResult> s;
            {
              py::gil_scoped_release nogil;
              s = c.load_start(mode, i, static_cast<Collection::Layout>(layout), out, t,
                               completion(q, cookie));
            }
            return pending(
                std::move(s),
                [layout](Collection::LoadResult& r) { return load_result(r, layout); },
                std::move(outputs));
          },
          py::arg("ids"), py::arg("layout"), py::arg("buffers"), py::arg("mode"),
          py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "length_start",
          [](const Collection& c, py::handle ids, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            DocIds i = id_list(ids);
            Started<std::vector<uint64_t>> s;
            {
              py::gil_scoped_release nogil;
              s = c.length_start(mode, i, t, completion(q, cookie));
            }
            return pending(std::move(s),
                           [](std::vector<uint64_t>& v) { return py::object(python_sizes(v)); });
          },
          py::arg("ids"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "erase_start",
          [](const Collection& c, py::handle ids, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            DocIds i = id_list(ids);
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = c.erase_start(mode, i, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("ids"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      // list() in two steps; the defaults (layout 2, no queue) are the
      // blocking scan's page ahead.
      .def(
          "list_start",
          [](const Collection& c, uint64_t start, py::handle filter, uint64_t count, int32_t mode,
             double t, int layout, py::handle buffers, const Queue& q, uint64_t cookie) {
            ByteViews views;
            auto f = views.read(filter, "filter");
            auto outputs = std::make_unique<ByteViews>();
            auto out = writable(*outputs, buffers);
            Started<Collection::ListResult> s;
            {
              py::gil_scoped_release nogil;
              s = c.list_start(mode, start, f, count, static_cast<Collection::Layout>(layout), out,
                               t, completion(q, cookie));
            }
            return pending(
                std::move(s),
                [layout](Collection::ListResult& r) { return list_result(r, layout); },
                std::move(outputs));
          },
          py::arg("start_id"), py::arg("filter"), py::arg("count"), py::arg("mode"),
          py::arg("timeout_ms"), py::arg("layout") = 2, py::arg("buffers") = py::none(),
          py::arg("completions") = Queue(), py::arg("cookie") = 0);
}

}  // namespace

void bind_collection(py::module_& m) {
  py::class_<Collection> cls(m, "Collection");
  cls.def(py::init<Database, std::string>(), py::arg("database"), py::arg("name"))
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
            return load_result(r, layout);
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
            return list_result(r, layout);
          },
          py::arg("start_id"), py::arg("filter"), py::arg("count"), py::arg("layout"),
          py::arg("buffers"), py::arg("mode"), py::arg("timeout_ms"));
  bind_start_calls(cls);
}

}  // namespace yokan::python
