// Turns a seed into a mutated engine message: bit flips, byte changes,
// truncation, extension, length/count/size fields set to extremes, mode flag
// combinations, header fields (rpc, provider id, flags, meta_len, prefix
// length, token, deadline), meta moved into the body or body bytes moved into
// the header, and finally raw damage to the serialized bytes.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "engine/wire_format.hpp"

namespace yokan::fuzz {

// A message as it goes to UCX.
struct Wire {
  uint16_t am_id;
  uint32_t send_flags;  // UCP_AM_SEND_FLAG_EAGER / _RNDV / 0
  std::string header;   // the AM header: WireHeader + meta + body prefix
  std::string data;     // the AM body
};

struct MutatorOptions {
  bool hello = true;          // may turn a request into a HELLO
  bool hello_address = true;  // also mutate the worker address in HELLOs
  size_t max_header = 8192;   // UCX's limit on the AM header
  size_t max_data = 1 << 20;  // bodies are cut to this
};

class Mutator {
 public:
  Mutator(uint64_t seed, MutatorOptions options) : rng_(seed), options_(options) {}

  // A mutated message from `seed` (with a few unmutated ones mixed in), sent
  // under `token` with sequence number `seq`.
  Wire make(const Seed& seed, const std::vector<Seed>& corpus, uint64_t token, uint64_t seq);

  uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }
  bool chance(unsigned percent) { return below(100) < percent; }

 private:
  struct Message {
    uint16_t am_id;
    WireHeader h;
    std::string meta, prefix, body;
    bool meta_len_fixed = false;  // a mutation chose meta_len: keep it
  };
  void mutate_once(Message& m, const Seed& seed, const std::vector<Seed>& corpus);
  void mutate_bytes(std::string& s, size_t from);
  uint64_t interesting(uint8_t width, size_t body_size);
  void poke(std::string& s, size_t at, uint8_t width, uint64_t v);
  Wire serialize(Message& m);

  std::mt19937_64 rng_;
  MutatorOptions options_;
};

}  // namespace yokan::fuzz
