// Client-side request encoding shared by the RPC families.
#pragma once

#include "common/rpc.hpp"
#include "common/segments.hpp"
#include "common/wire.hpp"
#include "yokan/client.hpp"

namespace yokan {

inline void check_mode(int32_t m) {
  if (!mode_is_compatible(m)) throw Exception(Status::YOKAN_ERR_MODE);
}

// meta [mode][key sizes] and the keys as body segments (borrowed, no copy).
// Throws INVALID_ARGS for an empty key and MODE for incompatible flags.
struct KeyRequest {
  WireWriter meta;
  std::vector<Segment> body;

  KeyRequest(int32_t m, const Keys& keys) {
    check_mode(m);
    std::vector<uint64_t> sizes(keys.size());
    body.reserve(keys.size() * 2);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i].empty()) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "empty key");
      sizes[i] = keys[i].size();
      append_segment(body, {keys[i].data(), keys[i].size()});
    }
    meta.put<int32_t>(m);
    meta.array(sizes);
  }
};

inline std::vector<uint64_t> decode_sizes(std::string_view meta, size_t expected) {
  WireReader in(meta);
  auto sizes = in.array<uint64_t>(expected);
  if (!in.done() || sizes.size() != expected)
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed reply from the provider");
  return sizes;
}

}  // namespace yokan
