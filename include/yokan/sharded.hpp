// A database spread over several providers (a group's shards), with the
// Database API for the key/value calls.
//
// Routing, stable and documented so that any language can route the same
// way: a key goes to shard
//     jump_consistent_hash(fnv1a_64(key bytes), number of shards)
// where fnv1a_64 is the 64-bit FNV-1a hash (offset basis 14695981039346656037,
// prime 1099511628211, over the key's bytes) and jump_consistent_hash is
// Lamping and Veach's "jump" consistent hash (2014). Growing a group from n
// to n + 1 shards moves only the keys that now map to the new shard
// (about 1/(n+1) of them).
//
// Batches are split by shard and every shard's request is sent before any
// reply is awaited, from the calling thread (no thread per shard): the
// shards work at the same time. A batch is not atomic across shards: if a
// shard fails, the others may have applied their part.
//
// Errors: as Database's, with the message naming the failing shard
// ("shard 2 of 4 (tcp://host:port, provider 7): ..."); a dead shard fails
// the calls routed to it, and only those.
//
// Thread-safety: as Database (may be used from several threads at once).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "yokan/client.hpp"

namespace yokan {

uint64_t fnv1a_64(std::string_view bytes) noexcept;
// Lamping & Veach's jump consistent hash: a bucket in [0, buckets).
// `buckets` must be at least 1.
uint32_t jump_consistent_hash(uint64_t key, uint32_t buckets) noexcept;
inline uint32_t shard_of(std::string_view key, uint32_t shards) noexcept {
  return jump_consistent_hash(fnv1a_64(key), shards);
}

class ShardedDatabase {
 public:
  // Throws INVALID_ARGS for no shards.
  explicit ShardedDatabase(std::vector<Database> shards);

  size_t size() const { return shards_.size(); }
  const Database& shard(size_t i) const { return shards_.at(i); }
  uint32_t shard_of(std::string_view key) const {
    return yokan::shard_of(key, static_cast<uint32_t>(shards_.size()));
  }
  // "shard I of N (ADDRESS, provider ID)", for messages.
  std::string describe(size_t i) const;

  // The Database calls, with Database's conventions; results in key order.
  uint64_t count(int32_t mode, double timeout_ms) const;
  void put(int32_t mode, const Keys& keys, const Keys& values, double timeout_ms) const;
  std::vector<uint64_t> get(int32_t mode, const Keys& keys, const std::vector<Destination>& out,
                            double timeout_ms) const;
  std::vector<uint64_t> get_packed(int32_t mode, const Keys& keys, Destination out,
                                   double timeout_ms) const;
  std::vector<uint64_t> get_alloc(int32_t mode, const Keys& keys, Buffer* values,
                                  double timeout_ms) const;
  std::vector<bool> exists(int32_t mode, const Keys& keys, double timeout_ms) const;
  std::vector<uint64_t> length(int32_t mode, const Keys& keys, double timeout_ms) const;
  void erase(int32_t mode, const Keys& keys, double timeout_ms) const;
  // On every shard.
  void erase_range(int32_t mode, std::string_view prefix, double timeout_ms) const;

 private:
  struct Request;  // one shard's part of a call (sharded.cpp)
  // Sends shard s's request for every s in `shards`, then collects the
  // replies in that order. Every call has ended (collected, or given up)
  // when this returns; the first failure is thrown, naming its shard.
  void fan_out(const std::vector<size_t>& shards, uint16_t rpc, int32_t mode, double timeout_ms,
               const std::function<Request(size_t)>& prepare,
               const std::function<void(size_t, Reply&)>& finish) const;
  // fan_out() of a plain key request (exists, length, erase): each shard
  // gets its keys of `keys`; `finish` gets each reply with the positions in
  // `keys` of the keys it answers for.
  void fan_out_keys(uint16_t rpc, int32_t mode, const Keys& keys, double timeout_ms,
                    const std::function<void(const std::vector<size_t>&, Reply&)>& finish) const;
  struct PackedValues;  // the found values of packed get replies, by key (sharded.cpp)
  // A packed get of `keys`, `capacity` bytes per shard (get_packed, get_alloc).
  PackedValues get_values(int32_t mode, const Keys& keys, uint64_t capacity,
                          double timeout_ms) const;

  std::vector<Database> shards_;
};

}  // namespace yokan
