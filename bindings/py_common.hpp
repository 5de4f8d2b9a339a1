// Shared pieces of the compiled modules (_common, _mode, _client, _server):
// byte views over Python objects, the error translator, and the registration
// function of each binding file. Each class is bound in exactly one module.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string_view>
#include <vector>

#include "yokan/common.hpp"

namespace py = pybind11;

namespace yokan::python {

// An error raised on the server side (Provider construction); the translator
// maps it to mochi.yokan.server.Exception, every other yokan::Exception to
// mochi.yokan.client.Exception.
class ServerError : public Exception {
 public:
  explicit ServerError(const Exception& e) : Exception(e.code(), e.what()) {}
};

// Holds the Py_buffers (or str storage) behind a set of byte views until the
// call is over. The GIL must be held to build it and to destroy it.
class ByteViews {
 public:
  ByteViews() = default;
  ByteViews(const ByteViews&) = delete;
  ByteViews& operator=(const ByteViews&) = delete;
  ~ByteViews();

  // str -> its UTF-8 bytes; bytes-like -> its buffer (C-contiguous, else
  // YOKAN_ERR_NONCONTIG). `what` names the argument in TypeErrors.
  std::string_view read(py::handle obj, const char* what);
  // A writable C-contiguous buffer (YOKAN_ERR_READONLY / YOKAN_ERR_NONCONTIG).
  std::pair<char*, size_t> write(py::handle obj, const char* what);
  std::vector<std::string_view> read_list(py::handle seq, const char* what);

 private:
  std::vector<Py_buffer> views_;
};

// Sizes in the Python convention: None for an absent key, -1 for an item that
// did not fit its buffer. Built here because a Python-level pass over a
// 1000-item batch costs as much as the round trip.
py::list python_sizes(const std::vector<uint64_t>& sizes);
// One bytes object per item of back-to-back `data`, None where the size says
// the item is absent (KEY_NOT_FOUND). YOKAN_ERR_CORRUPTION if `data` is
// shorter than the sizes add up to.
py::list split_bytes(std::string_view data, const std::vector<uint64_t>& sizes);

// Registers, for the calling module only, the translation of yokan::Exception
// (ServerError -> mochi.yokan.exception.ServerException, any other ->
// ClientException, with the code). Call it in every module that can throw.
void register_error_translator();

void bind_engine(py::module_& m);
void bind_server(py::module_& m);
void bind_client(py::module_& m);
void bind_collection(py::module_& m);
void bind_pending_call(py::module_& m);  // PendingCall, CompletionQueue (pending_call.hpp)

}  // namespace yokan::python
