// Bounds-checked encoding of RPC metadata (little-endian host order: both ends
// run this same code on the same kind of machine; the magic in the engine's
// wire header rejects foreign traffic).
#pragma once

#include <algorithm>
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
  // Sizes and ids: [count u64][width u8][count items of `width` bytes]. Each
  // item travels as v + kArrayBias (wrapping), so the sentinels just below
  // UINT64_MAX become 0..2 and a batch of small sizes packs into one byte per
  // item, which keeps a 1000-item batch's metadata inside the message header.
  WireWriter& array(const std::vector<uint64_t>& v) {
    uint64_t max = 0;
    for (uint64_t x : v) max = std::max(max, x + kArrayBias);
    const uint64_t* items = v.data();
    return array(v.size(), max, [items](size_t i) { return items[i]; });
  }
  // The same array from a function of the index, for a caller that already
  // knows the largest biased item (`biased_max`, the max of v + kArrayBias):
  // saves a pass over the items.
  template <typename ItemAt>
  WireWriter& array(size_t count, uint64_t biased_max, ItemAt item_at) {
    put<uint64_t>(count);
    const uint8_t width = biased_max <= 0xff         ? 1
                          : biased_max <= 0xffff     ? 2
                          : biased_max <= 0xffffffff ? 4
                                                     : 8;
    put<uint8_t>(width);
    size_t at = out_.size();
    out_.resize(at + count * width);
    char* dst = out_.data() + at;
    switch (width) {
      case 1:
        return pack<uint8_t>(count, item_at, dst);
      case 2:
        return pack<uint16_t>(count, item_at, dst);
      case 4:
        return pack<uint32_t>(count, item_at, dst);
      default:
        return pack<uint64_t>(count, item_at, dst);
    }
  }
  std::string& str() { return out_; }

  static constexpr uint64_t kArrayBias = 3;

 private:
  // `item_at` by value: a copy the byte stores cannot alias stays in registers.
  template <typename W, typename ItemAt>
  WireWriter& pack(size_t count, ItemAt item_at, char* dst) {
    for (size_t i = 0; i < count; ++i) {
      W w = static_cast<W>(item_at(i) + kArrayBias);
      std::memcpy(dst, &w, sizeof w);
      dst += sizeof w;
    }
    return *this;
  }
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
  // An array written by WireWriter::array whose count must not exceed `max_count`.
  template <typename T>
  std::vector<T> array(uint64_t max_count) {
    static_assert(std::is_same_v<T, uint64_t>, "arrays carry sizes and ids");
    uint64_t n = get<uint64_t>();
    uint8_t width = get<uint8_t>();
    std::vector<T> v;
    if (!ok_ || n > max_count || (width != 1 && width != 2 && width != 4 && width != 8) ||
        in_.size() / width < n) {
      ok_ = false;
      return v;
    }
    v.resize(n);
    switch (width) {
      case 1:
        unpack<uint8_t>(v);
        break;
      case 2:
        unpack<uint16_t>(v);
        break;
      case 4:
        unpack<uint32_t>(v);
        break;
      default:
        unpack<uint64_t>(v);
        break;
    }
    in_.remove_prefix(n * width);
    return v;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  template <typename W>
  void unpack(std::vector<uint64_t>& v) {
    const char* src = in_.data();
    for (auto& x : v) {
      W w;
      std::memcpy(&w, src, sizeof w);
      src += sizeof w;
      x = uint64_t(w) - WireWriter::kArrayBias;
    }
  }

  std::string_view in_;
  bool ok_ = true;
};

}  // namespace yokan
