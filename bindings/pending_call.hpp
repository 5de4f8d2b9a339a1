// PendingCall: a call made by one of the *_start methods of the native
// Database and Collection (yokan::Started), with what turns its result into
// Python objects and the output buffers it will write. The blocking scans
// use it to fetch a page ahead; mochi.yokan.aio uses it with a
// CompletionQueue to await calls on an event loop.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "py_common.hpp"
#include "yokan/client.hpp"

namespace yokan::python {

class PendingCall {
 public:
  virtual ~PendingCall() = default;
  // False when nothing was sent (an empty batch): wait() has the result.
  virtual bool sent() const = 0;
  virtual bool ready() const = 0;
  // At the caller's deadline: see Started::expire.
  virtual void expire() = 0;
  // The result, decoded (output buffers written); raises as the blocking
  // call does. Blocks (GIL released) only if the reply is not in yet.
  virtual py::object wait() = 0;
  // Gives the call up (a late reply is dropped) and lets go of the output
  // buffers; wait() then raises YOKAN_ERR_INVALID_ARGS.
  virtual void cancel() = 0;
};

template <typename T, typename Convert>
class PendingCallOf final : public PendingCall {
 public:
  PendingCallOf(Started<T> started, Convert convert, std::unique_ptr<ByteViews> outputs)
      : started_(std::move(started)), convert_(std::move(convert)), outputs_(std::move(outputs)) {}
  ~PendingCallOf() override { drop(); }

  bool sent() const override { return started_.sent(); }
  bool ready() const override { return started_.ready(); }
  void expire() override {
    py::gil_scoped_release nogil;
    started_.expire();
  }
  py::object wait() override {
    if (cancelled_) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "the call was cancelled");
    if constexpr (std::is_void_v<T>) {
      {
        py::gil_scoped_release nogil;
        started_.finish();
      }
      outputs_.reset();
      return py::none();
    } else {
      T result;
      {
        py::gil_scoped_release nogil;
        result = started_.finish();
      }
      py::object out = convert_(result);
      outputs_.reset();
      return out;
    }
  }
  void cancel() override {
    cancelled_ = true;
    drop();
  }

 private:
  // Gives the call up (GIL released: it may wait a moment for a reply being
  // received), then releases the buffers (GIL held).
  void drop() {
    {
      py::gil_scoped_release nogil;
      Started<T> gone = std::move(started_);
    }
    outputs_.reset();
  }

  Started<T> started_;
  Convert convert_;
  std::unique_ptr<ByteViews> outputs_;  // the buffers wait() writes into
  bool cancelled_ = false;
};

template <typename T, typename Convert>
std::unique_ptr<PendingCall> pending(Started<T> started, Convert convert,
                                     std::unique_ptr<ByteViews> outputs = nullptr) {
  return std::make_unique<PendingCallOf<T, Convert>>(std::move(started), std::move(convert),
                                                     std::move(outputs));
}

// (queue, cookie) from Python: None means no queue (a blocking caller).
inline Completion completion(const std::shared_ptr<CompletionQueue>& queue, uint64_t cookie) {
  return Completion{queue, cookie};
}

}  // namespace yokan::python
