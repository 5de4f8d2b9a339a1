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

}  // namespace yokan
