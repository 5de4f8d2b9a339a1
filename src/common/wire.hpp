// Bounds-checked encoding of RPC metadata (little-endian host order: both ends
// run this same code on the same kind of machine; the magic in the engine's
// wire header rejects foreign traffic).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace yokan {

class WireWriter {
 public:
  template <typename T>
  WireWriter& put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  WireWriter& bytes(std::string_view s) {
    put<uint64_t>(s.size());
    out_.append(s.data(), s.size());
    return *this;
  }
  template <typename T>
  WireWriter& array(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    return *this;
  }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

// Every read checks the remaining length; a failed read sets ok() to false and
// returns zeros, so a handler validates once at the end.
class WireReader {
 public:
  explicit WireReader(std::string_view in) : in_(in) {}
  template <typename T>
  T get() {
    T v{};
    if (!ok_ || in_.size() < sizeof v) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data(), sizeof v);
    in_.remove_prefix(sizeof v);
    return v;
  }
  std::string_view bytes() {
    uint64_t n = get<uint64_t>();
    if (!ok_ || in_.size() < n) {
      ok_ = false;
      return {};
    }
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(n);
    return s;
  }
  // An array of T whose count must not exceed `max_count`.
  template <typename T>
  std::vector<T> array(uint64_t max_count) {
    uint64_t n = get<uint64_t>();
    std::vector<T> v;
    if (!ok_ || n > max_count || in_.size() / sizeof(T) < n) {
      ok_ = false;
      return v;
    }
    v.resize(n);
    std::memcpy(v.data(), in_.data(), n * sizeof(T));
    in_.remove_prefix(n * sizeof(T));
    return v;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace yokan
