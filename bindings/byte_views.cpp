// Byte views over Python objects and the Python-side size conventions, shared
// by the Database and Collection bindings of mochi.yokan._client.
#include "py_common.hpp"

namespace yokan::python {

py::list python_sizes(const std::vector<uint64_t>& sizes) {
  py::list out(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    PyObject* item;
    if (i > 0 && sizes[i] == sizes[i - 1]) {
      // Values of a batch are mostly of one size: share the int (immutable).
      item = PyList_GET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i - 1));
      Py_INCREF(item);
    } else if (sizes[i] == KEY_NOT_FOUND)
      item = py::none().release().ptr();
    else if (sizes[i] == SIZE_TOO_SMALL)
      item = PyLong_FromLong(-1);
    else
      item = PyLong_FromUnsignedLongLong(sizes[i]);
    if (!item) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), item);  // steals the reference
  }
  return out;
}

py::list split_bytes(std::string_view data, const std::vector<uint64_t>& sizes) {
  py::list out(sizes.size());
  size_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == KEY_NOT_FOUND) {
      out[i] = py::none();
      continue;
    }
    if (sizes[i] > data.size() - offset)
      throw Exception(Status::YOKAN_ERR_CORRUPTION, "reply shorter than its sizes");
    out[i] = py::bytes(data.data() + offset, sizes[i]);
    offset += sizes[i];
  }
  return out;
}

ByteViews::~ByteViews() {
  for (auto& v : views_) PyBuffer_Release(&v);
}

std::string_view ByteViews::read(py::handle obj, const char* what) {
  if (PyUnicode_Check(obj.ptr())) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
    if (!s) throw py::error_already_set();
    return {s, static_cast<size_t>(n)};
  }
  if (PyBytes_Check(obj.ptr()))
    return {PyBytes_AS_STRING(obj.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(obj.ptr()))};
  if (!PyObject_CheckBuffer(obj.ptr()))
    throw py::type_error(std::string(what) + " must be str or a bytes-like object, not " +
                         Py_TYPE(obj.ptr())->tp_name);
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_STRIDES) != 0) {
    PyErr_Clear();
    throw Exception(Status::YOKAN_ERR_NONCONTIG, std::string(what) + " is not a contiguous buffer");
  }
  views_.push_back(view);
  if (!PyBuffer_IsContiguous(&view, 'C'))
    throw Exception(Status::YOKAN_ERR_NONCONTIG, std::string(what) + " is not C-contiguous");
  return {static_cast<const char*>(view.buf), static_cast<size_t>(view.len)};
}

std::pair<char*, size_t> ByteViews::write(py::handle obj, const char* what) {
  if (!PyObject_CheckBuffer(obj.ptr()) || PyUnicode_Check(obj.ptr()))
    throw py::type_error(std::string(what) + " must be a writable bytes-like object, not " +
                         Py_TYPE(obj.ptr())->tp_name);
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_STRIDES) != 0) {
    PyErr_Clear();
    throw Exception(Status::YOKAN_ERR_NONCONTIG, std::string(what) + " is not a contiguous buffer");
  }
  views_.push_back(view);
  if (view.readonly)
    throw Exception(Status::YOKAN_ERR_READONLY, std::string(what) + " is read-only");
  if (!PyBuffer_IsContiguous(&view, 'C'))
    throw Exception(Status::YOKAN_ERR_NONCONTIG, std::string(what) + " is not C-contiguous");
  return {static_cast<char*>(view.buf), static_cast<size_t>(view.len)};
}

std::vector<std::string_view> ByteViews::read_list(py::handle seq, const char* what) {
  std::vector<std::string_view> out;
  if (PyList_Check(seq.ptr()) || PyTuple_Check(seq.ptr())) {
    // Items read in place (pybind11's sequence iterator takes and drops a
    // reference per item). The list cannot change meanwhile: read() runs no
    // Python code on it (str's UTF-8 form and buffers of bytes-likes only).
    PyObject* const* items = PySequence_Fast_ITEMS(seq.ptr());
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    out.reserve(n);
    for (Py_ssize_t i = 0; i < n; ++i) out.push_back(read(items[i], what));
    return out;
  }
  py::sequence s = py::reinterpret_borrow<py::sequence>(seq);
  out.reserve(s.size());
  for (auto item : s) out.push_back(read(item, what));
  return out;
}

}  // namespace yokan::python
