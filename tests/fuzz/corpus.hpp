// Seed messages for the wire fuzzer: one or more well-formed requests of every
// RPC (and a HELLO), encoded the way the client library encodes them, plus
// where their length, count and size fields sit so that the mutator can set
// those to extremes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace yokan::fuzz {

// A length, count or size field inside a seed's meta.
struct Field {
  uint32_t offset;
  uint8_t width;  // 1, 2, 4 or 8 bytes
};

struct Seed {
  std::string name;  // "put/multi", ... (for reports)
  uint16_t am_id;    // kAmHello or kAmRequest
  uint16_t rpc;
  uint16_t provider;
  std::string meta;
  std::string body;
  std::vector<Field> fields;
  uint32_t timeout_ms = 0;
};

// The provider ids the harness serves (see fuzz_main.cpp).
struct Providers {
  uint16_t map = 1;         // in-memory, sorted, answered inline
  uint16_t persistent = 0;  // on disk (0: none compiled)
  uint16_t docs = 0;        // document-only store (0: none)
  uint16_t read_only = 0;   // a read-only map
};

// Every seed, for the given providers. The HELLO seed carries `token` and
// `worker_address` (the fuzzer's own, so the server can answer it).
std::vector<Seed> make_corpus(const Providers& p, uint64_t token,
                              const std::string& worker_address);

}  // namespace yokan::fuzz
