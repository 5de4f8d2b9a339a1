// The engine's message format: every message is one UCX active message whose
// AM header is a WireHeader followed by the RPC's meta (unless kFlagMetaInBody)
// and the body prefix (kFlagBodyPrefix), and whose AM data is the body (with
// the meta at its front under kFlagMetaInBody).
//
// Shared by the engine (src/engine/ucx_engine.cpp) and the wire fuzzer
// (tests/fuzz/), which builds raw messages the way a hostile peer would.
// Changing anything here changes the protocol: both ends must agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace yokan {

constexpr uint16_t kAmHello = 1;
constexpr uint16_t kAmRequest = 2;
constexpr uint16_t kAmResponse = 3;
constexpr uint32_t kWireMagic = 0x594b4e31;  // "YKN1"
constexpr uint16_t kFlagMetaInBody = 1;
// The first `reserved` bytes of the body travel in the AM header, so that one
// large value can go as contiguous data (UCX's zero-copy rendezvous paths want
// a contiguous buffer on both ends).
constexpr uint16_t kFlagBodyPrefix = 2;
constexpr size_t kMaxHeaderMeta = 4096;
constexpr size_t kMaxBodyPrefix = 2048;

struct WireHeader {
  uint32_t magic;
  uint16_t rpc;
  uint16_t provider;
  uint64_t seq;
  uint64_t token;  // sender's engine token (requests, hello)
  int32_t status;  // responses
  uint32_t meta_len;
  uint32_t timeout_ms;
  uint16_t flags;
  uint16_t reserved;  // kFlagBodyPrefix: the prefix length
};
static_assert(sizeof(WireHeader) == 40, "wire header layout");

// Splits a received AM header into its WireHeader, meta and body prefix.
// False for anything that is not exactly one well-formed header: wrong
// magic, lengths that do not add up to `header_len`, or both meta-in-body and
// a prefix.
inline bool parse_header(const void* header, size_t header_len, WireHeader* h,
                         std::string_view* meta, std::string_view* prefix) {
  if (header_len < sizeof(WireHeader)) return false;
  std::memcpy(h, header, sizeof *h);
  if (h->magic != kWireMagic) return false;
  size_t meta_here = (h->flags & kFlagMetaInBody) ? 0 : h->meta_len;
  size_t prefix_len = (h->flags & kFlagBodyPrefix) ? h->reserved : 0;
  if ((h->flags & kFlagMetaInBody) && prefix_len) return false;
  if (header_len != sizeof(WireHeader) + meta_here + prefix_len) return false;
  const char* p = static_cast<const char*>(header) + sizeof(WireHeader);
  *meta = {p, meta_here};
  *prefix = {p + meta_here, prefix_len};
  return true;
}

}  // namespace yokan
