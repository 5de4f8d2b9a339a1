// An owned, growable, uninitialised byte buffer. Unlike std::string it does not
// zero-fill when sized, which matters for multi-megabyte values.
//
// Large buffers (>= 1 MiB) come from a process-wide pool of idle allocations:
// fresh memory costs a page fault per 4 KiB page on first touch, which on a VM
// is slower than copying the data, so reusing warm memory is a large win for
// big values. The pool keeps at most 1 GiB idle. Thread-safe.
//
// A buffer can also borrow read-only bytes kept alive by a shared owner
// (Buffer::borrow): sending a stored value without copying it. Growing a
// borrowed buffer copies it into owned memory first; never write through
// data() of a borrowed buffer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "yokan/copy.hpp"

namespace yokan {

namespace buffer_pool {
// Returns a block of at least `size` bytes; `*capacity` receives its real size.
char* acquire(size_t size, size_t* capacity);
void release(char* data, size_t capacity) noexcept;
}  // namespace buffer_pool

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size) { resize(size); }
  Buffer(const void* src, size_t size) {
    resize(size);
    if (size) copy_bytes(data_, src, size);
  }
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)),
        owner_(std::move(o.owner_)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
      owner_ = std::move(o.owner_);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  // `size` bytes at `data`, kept alive by `owner`; nothing is copied.
  static Buffer borrow(std::shared_ptr<const void> owner, const char* data, size_t size) {
    Buffer b;
    b.owner_ = std::move(owner);
    b.data_ = const_cast<char*>(data);
    b.size_ = b.capacity_ = size;
    return b;
  }

  char* data() noexcept { return data_; }
  const char* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  std::string_view view() const noexcept { return {data_, size_}; }

  void reserve(size_t capacity) {
    if (capacity <= capacity_) return;
    size_t got = 0;
    char* p = buffer_pool::acquire(capacity, &got);
    if (size_) copy_bytes(p, data_, size_);
    release();
    data_ = p;
    capacity_ = got;
  }
  void resize(size_t size) {
    reserve(size);
    size_ = size;
  }
  void append(const void* src, size_t n) {
    if (size_ + n > capacity_) reserve(std::max(size_ + n, capacity_ * 2));
    if (n) copy_bytes(data_ + size_, src, n);
    size_ += n;
  }

 private:
  void release() noexcept {
    if (owner_)
      owner_.reset();
    else
      buffer_pool::release(data_, capacity_);
  }

  char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  std::shared_ptr<const void> owner_;  // set when the bytes are borrowed
};

}  // namespace yokan
