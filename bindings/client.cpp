#include "yokan/client.hpp"

#include "pending_call.hpp"
#include "py_common.hpp"
#include "yokan/sharded.hpp"

namespace yokan::python {

namespace {

// Items are a sequence of str/buffers, or a packed pair (buffer, sizes) that
// is sliced here without creating a Python object per item.
Keys read_items(ByteViews& views, py::handle items, const char* what) {
  if (py::isinstance<py::tuple>(items) && py::len(items) == 2 &&
      py::isinstance<py::list>(items[py::int_(1)])) {
    auto data = views.read(items[py::int_(0)], what);
    py::list sizes = items[py::int_(1)];
    // Sized first and written by index: emplace_back reloads and stores the
    // vector's end on every item (~3 ns per item, 1000-item batches).
    const Py_ssize_t count = PyList_GET_SIZE(sizes.ptr());
    Keys out(static_cast<size_t>(count));
    std::string_view* slot = out.data();
    size_t offset = 0;
    // Any integer (int, bool, numpy integers: whatever has __index__); a
    // str or float is a TypeError, an int past 64 bits an OverflowError.
    // A list of sizes mostly repeats one int object ([16] * n, or small ints,
    // which CPython caches): the same exact int as the item before has the
    // same value, already checked.
    PyObject* last = nullptr;
    long long n = 0;
    for (Py_ssize_t i = 0; i < count; ++i) {
      PyObject* item = PyList_GET_ITEM(sizes.ptr(), i);
      if (item != last) {
        last = nullptr;
        if (PyLong_CheckExact(item)) {  // the usual case: no __index__ call, no new reference
          n = PyLong_AsLongLong(item);
          last = item;
        } else {
          auto index = py::reinterpret_steal<py::object>(PyNumber_Index(item));
          if (!index) throw py::error_already_set();
          n = PyLong_AsLongLong(index.ptr());
          // __index__ is Python code: it may have shortened the list.
          if (PyList_GET_SIZE(sizes.ptr()) != count)
            throw py::value_error(std::string(what) + " sizes changed while being read");
        }
        if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (n < 0) throw py::value_error(std::string(what) + " sizes must not be negative");
      }
      if (static_cast<size_t>(n) > data.size() - offset)
        throw py::value_error(std::string(what) + "s buffer is smaller than the sum of its sizes");
      slot[i] = std::string_view(data.data() + offset, static_cast<size_t>(n));
      offset += static_cast<size_t>(n);
    }
    return out;
  }
  return views.read_list(items, what);
}

// (keys, values) of a kAlloc listing as lists of bytes (values empty without them).
py::tuple allocated_page(const Database::ListResult& r, bool with_values) {
  return py::make_tuple(split_bytes(r.keys.view(), r.key_sizes),
                        with_values ? split_bytes(r.values.view(), r.value_sizes) : py::list());
}

// A keys-only listing into a zero-length slot can never succeed.
void check_list_slots(int layout, bool with_values, const std::vector<Destination>& kout) {
  if (layout == 0 && !with_values)
    for (auto& d : kout)
      if (d.size == 0) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "empty key buffer");
}

// What the list bindings return: layout 2, (keys, values) as lists of bytes;
// else (key sizes, value sizes).
py::object list_result(const Database::ListResult& r, int layout, bool with_values) {
  if (layout == 2) return allocated_page(r, with_values);
  return py::make_tuple(python_sizes(r.key_sizes), python_sizes(r.value_sizes));
}

// The key/value calls, the same for one provider (Database) and for a group's
// shards (ShardedDatabase): bound once per class from one definition.
template <typename DB>
void bind_key_value_calls(py::class_<DB>& cls) {
  cls.def("count", &DB::count, py::arg("mode"), py::arg("timeout_ms"),
          py::call_guard<py::gil_scoped_release>())
      .def(
          "put",
          [](const DB& db, py::handle keys, py::handle values, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Keys v = read_items(views, values, "value");
            py::gil_scoped_release nogil;
            db.put(mode, k, v, t);
          },
          py::arg("keys"), py::arg("values"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "get",
          [](const DB& db, py::handle keys, py::handle buffers, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            std::vector<Destination> out;
            for (auto b : py::reinterpret_borrow<py::sequence>(buffers)) {
              auto [p, n] = views.write(b, "value buffer");
              out.push_back({p, n});
            }
            std::vector<uint64_t> sizes;
            {
              py::gil_scoped_release nogil;
              sizes = db.get(mode, k, out, t);
            }
            return python_sizes(sizes);
          },
          py::arg("keys"), py::arg("buffers"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "get_packed",
          [](const DB& db, py::handle keys, py::handle buffer, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            auto [p, n] = views.write(buffer, "values buffer");
            std::vector<uint64_t> sizes;
            {
              py::gil_scoped_release nogil;
              sizes = db.get_packed(mode, k, {p, n}, t);
            }
            return python_sizes(sizes);
          },
          py::arg("keys"), py::arg("buffer"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "get_alloc",
          [](const DB& db, py::handle keys, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            std::vector<uint64_t> sizes;
            Buffer values;
            {
              py::gil_scoped_release nogil;
              sizes = db.get_alloc(mode, k, &values, t);
            }
            return split_bytes(values.view(), sizes);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "exists",
          [](const DB& db, py::handle keys, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            py::gil_scoped_release nogil;
            return db.exists(mode, k, t);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "length",
          [](const DB& db, py::handle keys, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            std::vector<uint64_t> sizes;
            {
              py::gil_scoped_release nogil;
              sizes = db.length(mode, k, t);
            }
            return python_sizes(sizes);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "erase",
          [](const DB& db, py::handle keys, int32_t mode, double t) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            py::gil_scoped_release nogil;
            db.erase(mode, k, t);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "erase_range",
          [](const DB& db, py::handle prefix, int32_t mode, double t) {
            ByteViews views;
            auto p = views.read(prefix, "prefix");
            py::gil_scoped_release nogil;
            db.erase_range(mode, p, t);
          },
          py::arg("prefix"), py::arg("mode"), py::arg("timeout_ms"));
}

// Writable destinations of a sequence of buffers (None: none), held by `views`.
std::vector<Destination> writable_list(ByteViews& views, py::handle seq, const char* what) {
  std::vector<Destination> out;
  if (seq.is_none()) return out;
  for (auto b : py::reinterpret_borrow<py::sequence>(seq)) {
    auto [p, n] = views.write(b, what);
    out.push_back({p, n});
  }
  return out;
}

// The two-step calls of Database: each takes the blocking binding's
// arguments plus (completions, cookie) and returns a PendingCall whose
// wait() returns what the blocking binding returns. Input buffers are
// released when the call has been sent (it owns a copy, or borrows them
// only until then for a blocking caller, who waits right away); output
// buffers stay held by the PendingCall until wait() or cancel().
void bind_start_calls(py::class_<Database>& cls) {
  using Queue = std::shared_ptr<CompletionQueue>;
  auto sizes = [](std::vector<uint64_t>& v) { return py::object(python_sizes(v)); };
  cls.def(
         "count_start",
         [](const Database& db, int32_t mode, double t, const Queue& q, uint64_t cookie) {
           Started<uint64_t> s;
           {
             py::gil_scoped_release nogil;
             s = db.count_start(mode, t, completion(q, cookie));
           }
           return pending(std::move(s), [](uint64_t& n) { return py::object(py::int_(n)); });
         },
         py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"))
      .def(
          "put_start",
          [](const Database& db, py::handle keys, py::handle values, int32_t mode, double t,
             const Queue& q, uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Keys v = read_items(views, values, "value");
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = db.put_start(mode, k, v, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("keys"), py::arg("values"), py::arg("mode"), py::arg("timeout_ms"),
          py::arg("completions"), py::arg("cookie"))
      .def(
          "get_start",
          [sizes](const Database& db, py::handle keys, py::handle buffers, int32_t mode, double t,
                  const Queue& q, uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            auto outputs = std::make_unique<ByteViews>();
            auto out = writable_list(*outputs, buffers, "value buffer");
            Started<std::vector<uint64_t>> s;
            {
              py::gil_scoped_release nogil;
              s = db.get_start(mode, k, out, t, completion(q, cookie));
            }
            return pending(std::move(s), sizes, std::move(outputs));
          },
          py::arg("keys"), py::arg("buffers"), py::arg("mode"), py::arg("timeout_ms"),
          py::arg("completions"), py::arg("cookie"))
      .def(
          "get_packed_start",
          [sizes](const Database& db, py::handle keys, py::handle buffer, int32_t mode, double t,
                  const Queue& q, uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            auto outputs = std::make_unique<ByteViews>();
            auto [p, n] = outputs->write(buffer, "values buffer");
            Started<std::vector<uint64_t>> s;
            {
              py::gil_scoped_release nogil;
              s = db.get_packed_start(mode, k, {p, n}, t, completion(q, cookie));
            }
            return pending(std::move(s), sizes, std::move(outputs));
          },
          py::arg("keys"), py::arg("buffer"), py::arg("mode"), py::arg("timeout_ms"),
          py::arg("completions"), py::arg("cookie"))
      .def(
          "get_alloc_start",
          [](const Database& db, py::handle keys, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Started<Database::AllocResult> s;
            {
              py::gil_scoped_release nogil;
              s = db.get_alloc_start(mode, k, t, completion(q, cookie));
            }
            return pending(std::move(s), [](Database::AllocResult& r) {
              return py::object(split_bytes(r.values.view(), r.sizes));
            });
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "exists_start",
          [](const Database& db, py::handle keys, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Started<std::vector<bool>> s;
            {
              py::gil_scoped_release nogil;
              s = db.exists_start(mode, k, t, completion(q, cookie));
            }
            return pending(std::move(s), [](std::vector<bool>& v) { return py::cast(v); });
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "length_start",
          [sizes](const Database& db, py::handle keys, int32_t mode, double t, const Queue& q,
                  uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Started<std::vector<uint64_t>> s;
            {
              py::gil_scoped_release nogil;
              s = db.length_start(mode, k, t, completion(q, cookie));
            }
            return pending(std::move(s), sizes);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "erase_start",
          [](const Database& db, py::handle keys, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            ByteViews views;
            Keys k = read_items(views, keys, "key");
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = db.erase_start(mode, k, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("keys"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      .def(
          "erase_range_start",
          [](const Database& db, py::handle prefix, int32_t mode, double t, const Queue& q,
             uint64_t cookie) {
            ByteViews views;
            auto p = views.read(prefix, "prefix");
            Started<void> s;
            {
              py::gil_scoped_release nogil;
              s = db.erase_range_start(mode, p, t, completion(q, cookie));
            }
            return pending(std::move(s), 0);
          },
          py::arg("prefix"), py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"),
          py::arg("cookie"))
      // list() in two steps; wait() returns what list() returns. The
      // defaults (layout 2, no queue) are the blocking scan's page ahead.
      .def(
          "list_start",
          [](const Database& db, py::handle from, py::handle filter, uint64_t count,
             bool with_values, int32_t mode, double t, int layout, py::handle key_bufs,
             py::handle value_bufs, const Queue& q, uint64_t cookie) {
            ByteViews views;
            auto f = views.read(from, "from_key");
            auto flt = views.read(filter, "filter");
            auto outputs = std::make_unique<ByteViews>();
            auto kout = writable_list(*outputs, key_bufs, "list buffer");
            auto vout = writable_list(*outputs, value_bufs, "list buffer");
            check_list_slots(layout, with_values, kout);
            Started<Database::ListResult> s;
            {
              py::gil_scoped_release nogil;
              s = db.list_start(mode, f, flt, count, with_values,
                                static_cast<Database::ListLayout>(layout), kout, vout, t,
                                completion(q, cookie));
            }
            return pending(
                std::move(s),
                [layout, with_values](Database::ListResult& r) {
                  return list_result(r, layout, with_values);
                },
                std::move(outputs));
          },
          py::arg("from_key"), py::arg("filter"), py::arg("count"), py::arg("with_values"),
          py::arg("mode"), py::arg("timeout_ms"), py::arg("layout") = 2,
          py::arg("key_buffers") = py::none(), py::arg("value_buffers") = py::none(),
          py::arg("completions") = Queue(), py::arg("cookie") = 0);
}

}  // namespace

void bind_client(py::module_& m) {
  py::class_<Client>(m, "Client")
      .def(py::init<std::shared_ptr<Engine>>(), py::arg("engine"))
      .def("make_database_handle", &Client::make_database_handle, py::arg("address"),
           py::arg("provider_id"), py::arg("check") = true,
           py::call_guard<py::gil_scoped_release>());

  py::class_<Database> database(m, "Database");
  bind_key_value_calls(database);
  database.def_property_readonly("provider_id", &Database::provider_id)
      .def("address", &Database::address)
      .def("transport_info", &Database::transport_info, py::call_guard<py::gil_scoped_release>())
      // layout: 0 = one buffer per slot, 1 = packed: returns (key sizes, value
      // sizes). 2 = allocate: returns (keys, values) as lists of bytes.
      .def(
          "list",
          [](const Database& db, py::handle from, py::handle filter, uint64_t count,
             bool with_values, int layout, py::handle key_bufs, py::handle value_bufs, int32_t mode,
             double t) {
            ByteViews views;
            auto f = views.read(from, "from_key");
            auto flt = views.read(filter, "filter");
            auto kout = writable_list(views, key_bufs, "list buffer");
            auto vout = writable_list(views, value_bufs, "list buffer");
            check_list_slots(layout, with_values, kout);
            Database::ListResult r;
            {
              py::gil_scoped_release nogil;
              r = db.list(mode, f, flt, count, with_values,
                          static_cast<Database::ListLayout>(layout), kout, vout, t);
            }
            return list_result(r, layout, with_values);
          },
          py::arg("from_key"), py::arg("filter"), py::arg("count"), py::arg("with_values"),
          py::arg("layout"), py::arg("key_buffers"), py::arg("value_buffers"), py::arg("mode"),
          py::arg("timeout_ms"));
  bind_start_calls(database);
  // A byte range of one value: (the value's full size, or None if absent; the bytes).
  auto range_tuple = [](Database::RangeResult& r) {
    py::object size =
        r.value_size == KEY_NOT_FOUND ? py::object(py::none()) : py::object(py::int_(r.value_size));
    auto v = r.bytes.view();
    return py::object(py::make_tuple(size, py::bytes(v.data(), v.size())));
  };
  database
      .def(
          "get_range",
          [range_tuple](const Database& db, py::handle key, uint64_t offset, uint64_t length,
                        bool from_end, int32_t mode, double t) {
            ByteViews views;
            auto k = views.read(key, "key");
            Database::RangeResult r;
            {
              py::gil_scoped_release nogil;
              r = db.get_range(mode, k, offset, length, from_end, t);
            }
            return range_tuple(r);
          },
          py::arg("key"), py::arg("offset"), py::arg("length"), py::arg("from_end"),
          py::arg("mode"), py::arg("timeout_ms"))
      .def(
          "get_range_start",
          [range_tuple](const Database& db, py::handle key, uint64_t offset, uint64_t length,
                        bool from_end, int32_t mode, double t,
                        const std::shared_ptr<CompletionQueue>& q, uint64_t cookie) {
            ByteViews views;
            auto k = views.read(key, "key");
            Started<Database::RangeResult> s;
            {
              py::gil_scoped_release nogil;
              s = db.get_range_start(mode, k, offset, length, from_end, t, completion(q, cookie));
            }
            return pending(std::move(s), range_tuple);
          },
          py::arg("key"), py::arg("offset"), py::arg("length"), py::arg("from_end"),
          py::arg("mode"), py::arg("timeout_ms"), py::arg("completions"), py::arg("cookie"));

  py::class_<ShardedDatabase> sharded(m, "ShardedDatabase");
  bind_key_value_calls(sharded);
  sharded.def(py::init<std::vector<Database>>(), py::arg("shards"))
      .def("__len__", &ShardedDatabase::size)
      .def("shard_of",
           [](const ShardedDatabase& db, py::handle key) {
             ByteViews views;
             return db.shard_of(views.read(key, "key"));
           })
      .def("describe", &ShardedDatabase::describe, py::arg("shard"));
  m.def(
      "shard_of",
      [](py::handle key, uint32_t shards) {
        if (shards == 0) throw py::value_error("the number of shards must be at least 1");
        ByteViews views;
        return shard_of(views.read(key, "key"), shards);
      },
      py::arg("key"), py::arg("shards"));
  m.def(
      "fnv1a_64",
      [](py::handle key) {
        ByteViews views;
        return fnv1a_64(views.read(key, "key"));
      },
      py::arg("key"));
}

void bind_pending_call(py::module_& m) {
  py::class_<CompletionQueue, std::shared_ptr<CompletionQueue>>(m, "CompletionQueue")
      .def(py::init<>())
      .def("fd", &CompletionQueue::fd)
      .def("take", &CompletionQueue::take)
      .def("in_flight", &CompletionQueue::in_flight)
      .def("peak_in_flight", &CompletionQueue::peak_in_flight)
      .def("reset_peak", &CompletionQueue::reset_peak);
  py::class_<PendingCall>(m, "PendingCall")
      .def("sent", &PendingCall::sent)
      .def("ready", &PendingCall::ready)
      .def("expire", &PendingCall::expire)
      .def("wait", &PendingCall::wait)
      .def("cancel", &PendingCall::cancel);
}

}  // namespace yokan::python
