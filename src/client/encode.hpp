// Client-side request encoding shared by the RPC families.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/rpc.hpp"
#include "common/segments.hpp"
#include "common/wire.hpp"
#include "yokan/client.hpp"

namespace yokan {

inline void check_mode(int32_t m) {
  if (!mode_is_compatible(m)) throw Exception(Status::YOKAN_ERR_MODE);
}

// A request body built from items (keys, values, documents): one byte
// stream on the wire. Items back to back in memory (a packed buffer) go as
// they are, one segment. Otherwise (a list of separate objects) the small
// ones are copied into one block the body owns: a segment per item cost
// ~7 ns to add here and as much again in the engine, ~30 µs per 1000 pairs
// with the copy the engine then made of such a body anyway.
struct RequestBody {
  // Items below this size that are not back to back in memory are copied.
  static constexpr size_t kGatherBelow = 4096;

  std::vector<Segment> segments;
  std::vector<std::unique_ptr<char[]>> copies;  // blocks `segments` points into

  // Appends the items' sizes to `meta` (the array the provider splits the
  // body by) and the items to the body. Returns the size of the smallest item
  // (0 for none).
  size_t add_items(const Keys& items, WireWriter& meta) {
    // One pass learns all that the encoding needs: five passes (sizes into a
    // vector, their maximum, ...) took ~2.4 µs per 1000 items.
    size_t total = 0, small = 0, smallest = items.empty() ? 0 : SIZE_MAX, largest = 0;
    const char* expected = items.empty() ? nullptr : items[0].data();
    bool adjacent = true;
    for (const auto& item : items) {
      const size_t n = item.size();
      adjacent &= item.data() == expected;
      expected = item.data() + n;
      total += n;
      small += n < kGatherBelow ? n : 0;
      smallest = std::min(smallest, n);
      largest = std::max(largest, n);
    }
    const std::string_view* item = items.data();
    meta.array(items.size(), largest + WireWriter::kArrayBias,
               [item](size_t i) -> uint64_t { return item[i].size(); });
    if (items.empty() || total == 0) return smallest;
    if (adjacent) {
      append_segment(segments, {items[0].data(), total});
      return smallest;
    }
    char* at = nullptr;
    if (small > 0) {
      copies.emplace_back(new char[small]);
      at = copies.back().get();
    }
    char* run = at;  // start of the copies not yet in `segments`
    for (const auto& item : items) {
      if (item.size() < kGatherBelow) {
        if (item.empty()) continue;  // `at` may be null then: no memcpy
        copy_bytes(at, item.data(), item.size());
        at += item.size();
      } else {
        append_segment(segments, {run, static_cast<size_t>(at - run)});
        append_segment(segments, {item.data(), item.size()});
        run = at;
      }
    }
    append_segment(segments, {run, static_cast<size_t>(at - run)});
    return smallest;
  }
};

// meta [mode][key sizes] and the keys as the body.
// Throws INVALID_ARGS for an empty key and MODE for incompatible flags.
struct KeyRequest {
  WireWriter meta;
  RequestBody body;

  KeyRequest(int32_t m, const Keys& keys) {
    check_mode(m);
    meta.put<int32_t>(m);
    if (body.add_items(keys, meta) == 0 && !keys.empty())
      throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "empty key");
  }
};

// A get: meta [mode][key sizes][packed][capacities], the keys as the body.
inline KeyRequest get_request(int32_t m, const Keys& keys, bool packed,
                              const std::vector<uint64_t>& caps) {
  KeyRequest req(m, keys);
  req.meta.put<uint8_t>(packed ? 1 : 0);
  req.meta.array(caps);
  return req;
}

inline std::vector<uint64_t> decode_sizes(std::string_view meta, size_t expected) {
  WireReader in(meta);
  auto sizes = in.array<uint64_t>(expected);
  if (!in.done() || sizes.size() != expected)
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed reply from the provider");
  return sizes;
}

}  // namespace yokan
