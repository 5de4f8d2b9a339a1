#include "mutator.hpp"

#include <ucp/api/ucp.h>

#include <algorithm>
#include <cstring>

#include "common/rpc.hpp"
#include "yokan/common.hpp"

namespace yokan::fuzz {

namespace {

// Every mode bit the server knows, plus one it does not.
constexpr int32_t kModeBits[] = {1,   2,    4,    8,    16,   32,    64,    128,    256,
                                 512, 1024, 2048, 4096, 8192, 16384, 32768, 1 << 20};

}  // namespace

uint64_t Mutator::interesting(uint8_t width, size_t body_size) {
  const uint64_t all = width == 8 ? UINT64_MAX : (uint64_t(1) << (8 * width)) - 1;
  const uint64_t values[] = {0,
                             1,
                             2,
                             3,
                             4,
                             all,
                             all - 1,
                             all - 2,
                             all - 3,
                             all / 2,
                             all / 2 + 1,
                             0x7f,
                             0x80,
                             0xff,
                             0x100,
                             0xffff,
                             0x10000,
                             0xffffffffu,
                             uint64_t(1) << 32,
                             rpc::kMaxBatch,
                             rpc::kMaxBatch + 1,
                             body_size,
                             body_size + 1,
                             body_size + 3,
                             body_size - 1,
                             rng_()};
  return values[below(std::size(values))] & all;
}

void Mutator::poke(std::string& s, size_t at, uint8_t width, uint64_t v) {
  if (at + width > s.size()) return;
  std::memcpy(s.data() + at, &v, width);  // little-endian: the low bytes
}

void Mutator::mutate_bytes(std::string& s, size_t from) {
  if (s.size() <= from) {
    s.push_back(char(rng_()));
    return;
  }
  const size_t n = s.size() - from;
  switch (below(8)) {
    case 0:  // flip a few bits
      for (int i = 0, k = 1 + below(8); i < k; ++i) s[from + below(n)] ^= char(1 << below(8));
      break;
    case 1:  // set a few bytes
      for (int i = 0, k = 1 + below(4); i < k; ++i) s[from + below(n)] = char(rng_());
      break;
    case 2:  // set a byte to an edge value
      s[from + below(n)] =
          char(std::initializer_list<int>{0, 1, 0x7f, 0x80, 0xfe, 0xff}.begin()[below(6)]);
      break;
    case 3:  // truncate
      s.resize(from + below(n));
      break;
    case 4:  // extend with random bytes
      for (int i = 0, k = 1 + below(64); i < k; ++i) s.push_back(char(rng_()));
      break;
    case 5: {  // repeat a chunk (duplicated array items, keys)
      size_t at = from + below(n), len = 1 + below(std::min<size_t>(n - (at - from), 32));
      std::string chunk = s.substr(at, len);
      for (int i = 0, k = 1 + below(8); i < k; ++i) s.insert(at, chunk);
      break;
    }
    case 6: {  // delete a chunk
      size_t at = from + below(n);
      s.erase(at, 1 + below(std::min<size_t>(s.size() - at, 16)));
      break;
    }
    default: {  // a 4- or 8-byte word to an interesting value
      uint8_t width = chance(50) ? 4 : 8;
      poke(s, from + below(n), width, interesting(width, s.size()));
    }
  }
}

void Mutator::mutate_once(Message& m, const Seed& seed, const std::vector<Seed>& corpus) {
  const bool hello = m.am_id == kAmHello;
  switch (below(hello ? 4 : 14)) {
    case 0:  // header fields
      switch (below(10)) {
        case 0:
          m.h.rpc = chance(50) ? uint16_t(below(rpc::kDocList + 3)) : uint16_t(rng_());
          break;
        case 1:
          m.h.provider = chance(50) ? uint16_t(below(8)) : uint16_t(rng_());
          break;
        case 2:
          m.h.flags = chance(50) ? uint16_t(below(4)) : uint16_t(rng_());
          break;
        case 3:
          m.h.reserved = chance(50) ? uint16_t(below(kMaxBodyPrefix + 8)) : uint16_t(rng_());
          m.h.flags |= chance(50) ? kFlagBodyPrefix : 0;
          break;
        case 4:
          m.h.meta_len = uint32_t(interesting(4, m.meta.size()));
          m.meta_len_fixed = true;
          break;
        case 5:
          m.h.timeout_ms = uint32_t(chance(50) ? below(100) : interesting(4, 0));
          break;
        case 6:
          m.h.token ^= uint64_t(1) << below(64);  // an unknown peer
          break;
        case 7:
          m.h.status = int32_t(rng_());
          break;
        case 8:
          m.h.seq = interesting(8, 0);
          break;
        default:
          m.h.magic ^= uint32_t(1) << below(32);
      }
      break;
    case 1: {  // the meta's bytes (HELLO: the token, or the address when allowed)
      size_t from = 0;
      if (hello && !options_.hello_address) {
        if (m.meta.size() >= 8) poke(m.meta, 0, 8, rng_());
        m.h.token = rng_();  // a new peer: the server connects to the address
        break;
      }
      if (hello) m.h.token = rng_();
      mutate_bytes(m.meta, from);
      break;
    }
    case 2:  // the body's bytes
      mutate_bytes(m.body, 0);
      break;
    case 3:  // sent as another kind of active message
      m.am_id =
          std::initializer_list<uint16_t>{kAmHello, kAmRequest, kAmResponse}.begin()[below(3)];
      if (m.am_id == kAmHello && !(options_.hello && options_.hello_address)) m.am_id = kAmRequest;
      break;
    case 4:
    case 5:
    case 6: {  // a length, count or size field to an extreme
      if (seed.fields.empty()) return mutate_bytes(m.meta, 0);
      const Field& f = seed.fields[below(seed.fields.size())];
      poke(m.meta, f.offset, f.width, interesting(f.width, m.body.size()));
      break;
    }
    case 7: {  // mode flag combinations
      if (m.meta.size() < 4) break;
      int32_t mode;
      std::memcpy(&mode, m.meta.data(), 4);
      if (chance(30)) mode = 0;
      for (int i = 0, k = 1 + below(3); i < k; ++i) mode ^= kModeBits[below(std::size(kModeBits))];
      if (chance(5)) mode = int32_t(rng_());
      std::memcpy(m.meta.data(), &mode, 4);
      break;
    }
    case 8:  // the meta travels at the front of the body
      m.h.flags |= kFlagMetaInBody;
      if (chance(20)) m.h.flags |= kFlagBodyPrefix;
      break;
    case 9: {  // leading body bytes travel in the header
      size_t k = below(std::min<size_t>(m.body.size(), kMaxBodyPrefix) + 1);
      m.prefix = m.body.substr(0, k);
      m.body.erase(0, k);
      m.h.flags |= kFlagBodyPrefix;
      break;
    }
    case 10: {  // another RPC's meta or body
      const Seed& other = corpus[below(corpus.size())];
      if (other.am_id != kAmRequest) break;
      if (chance(50))
        m.meta = other.meta;
      else
        m.body = other.body;
      break;
    }
    case 11:  // another provider (the read-only one, one that does not exist...)
      m.h.provider = uint16_t(below(6));
      break;
    case 12:  // a batch made huge: many copies of the body
      if (!m.body.empty() && m.body.size() < 4096)
        for (int i = 0, k = below(64); i < k; ++i) m.body += m.body.substr(0, 4096);
      break;
    default:  // the meta's bytes again (it is where the decoders are)
      mutate_bytes(m.meta, 0);
  }
}

Wire Mutator::serialize(Message& m) {
  Wire w;
  w.am_id = m.am_id;
  if (!m.meta_len_fixed) m.h.meta_len = uint32_t(m.meta.size());
  const bool meta_in_body = m.h.flags & kFlagMetaInBody;
  if (m.prefix.size() && (m.h.flags & kFlagBodyPrefix) && !m.meta_len_fixed && m.h.reserved == 0)
    m.h.reserved = uint16_t(m.prefix.size());
  w.header.assign(reinterpret_cast<const char*>(&m.h), sizeof m.h);
  if (!meta_in_body) w.header += m.meta;
  w.header += m.prefix;
  if (meta_in_body) w.data = m.meta;
  w.data += m.body;
  // Raw damage to the serialized message, now and then (not to a HELLO's
  // worker address unless allowed).
  const bool keep_header = m.am_id == kAmHello && !options_.hello_address;
  if (!keep_header && chance(10)) mutate_bytes(w.header, chance(80) ? 4 : 0);
  if (chance(5)) mutate_bytes(w.data, 0);
  if (w.header.size() > options_.max_header) w.header.resize(options_.max_header);
  if (w.data.size() > options_.max_data) w.data.resize(options_.max_data);
  w.send_flags = 0;
  if (chance(10)) w.send_flags = chance(50) ? UCP_AM_SEND_FLAG_EAGER : UCP_AM_SEND_FLAG_RNDV;
  return w;
}

Wire Mutator::make(const Seed& seed, const std::vector<Seed>& corpus, uint64_t token,
                   uint64_t seq) {
  Message m;
  m.am_id = seed.am_id;
  m.h = WireHeader{};
  m.h.magic = kWireMagic;
  m.h.rpc = seed.rpc;
  m.h.provider = seed.provider;
  m.h.seq = seq;
  m.h.token = token;
  m.h.timeout_ms = seed.timeout_ms;
  m.meta = seed.meta;
  m.body = seed.body;
  if (!chance(3))  // a few go as they are: they keep the store populated
    for (int i = 0, k = 1 + below(4); i < k; ++i) mutate_once(m, seed, corpus);
  return serialize(m);
}

}  // namespace yokan::fuzz
