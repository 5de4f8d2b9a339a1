// ShardedDatabase: a batch is split by shard, every shard's request is sent,
// then the replies are collected and put back in key order.
#include "yokan/sharded.hpp"

#include <functional>
#include <memory>

#include "client/encode.hpp"

namespace yokan {

uint64_t fnv1a_64(std::string_view bytes) noexcept {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

uint32_t jump_consistent_hash(uint64_t key, uint32_t buckets) noexcept {
  // Each step jumps forward to the next bucket count at which this key would
  // move; the last one below `buckets` is its bucket.
  int64_t bucket = -1, next = 0;
  while (next < static_cast<int64_t>(buckets)) {
    bucket = next;
    key = key * 2862933555777941757ull + 1;
    next = static_cast<int64_t>(
        static_cast<double>(bucket + 1) *
        (static_cast<double>(1ll << 31) / static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<uint32_t>(bucket);
}

ShardedDatabase::ShardedDatabase(std::vector<Database> shards) : shards_(std::move(shards)) {
  if (shards_.empty()) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "a group with no shards");
}

std::string ShardedDatabase::describe(size_t i) const {
  return "shard " + std::to_string(i) + " of " + std::to_string(shards_.size()) + " (" +
         shards_[i].address() + ", provider " + std::to_string(shards_[i].provider_id()) + ")";
}

namespace {

// The keys of a batch grouped by shard, with their positions in the batch.
struct Split {
  std::vector<std::vector<size_t>> positions;
  std::vector<Keys> keys;

  Split(const ShardedDatabase& db, const Keys& all) : positions(db.size()), keys(db.size()) {
    const uint32_t n = static_cast<uint32_t>(db.size());
    for (size_t i = 0; i < all.size(); ++i) {
      const uint32_t s = shard_of(all[i], n);
      positions[s].push_back(i);
      keys[s].push_back(all[i]);
    }
  }
  // `items` (values, destinations) regrouped like the keys.
  template <typename T>
  std::vector<T> pick(size_t shard, const std::vector<T>& items) const {
    std::vector<T> out;
    out.reserve(positions[shard].size());
    for (size_t p : positions[shard]) out.push_back(items[p]);
    return out;
  }
};

}  // namespace

// One shard's part of a call: meta, and the body pieces with what owns them.
struct ShardedDatabase::Request {
  std::string meta;
  std::unique_ptr<KeyRequest> keyed;  // owns the body's copied items

  const std::vector<Segment>& body() const {
    static const std::vector<Segment> none;
    return keyed ? keyed->body.segments : none;
  }
  static Request with_keys(std::unique_ptr<KeyRequest> req) {
    Request r;
    r.meta = req->meta.str();
    r.keyed = std::move(req);
    return r;
  }
  static Request meta_only(std::string meta) {
    Request r;
    r.meta = std::move(meta);
    return r;
  }
};

void ShardedDatabase::fan_out(const std::vector<size_t>& shards, uint16_t rpc, int32_t m,
                              double timeout_ms, const std::function<Request(size_t)>& prepare,
                              const std::function<void(size_t, Reply&)>& finish) const {
  std::vector<Request> requests(shards.size());
  std::vector<std::unique_ptr<CallInFlight>> calls(shards.size());
  size_t failed = SIZE_MAX;
  Status code = Status::YOKAN_SUCCESS;
  std::string why;
  auto note = [&](size_t k, const Exception& e) {
    if (failed != SIZE_MAX) return;
    failed = k;
    code = e.code();
    why = e.what();
  };
  for (size_t k = 0; k < shards.size(); ++k) {
    try {
      requests[k] = prepare(shards[k]);
      calls[k] = shards_[shards[k]].start(rpc, requests[k].meta, timeout_ms, m, requests[k].body());
    } catch (const Exception& e) {
      note(k, e);  // the other shards' requests still go: they are independent
    }
  }
  for (size_t k = 0; k < shards.size(); ++k) {
    if (!calls[k]) continue;
    try {
      Reply r = Database::finish(std::move(calls[k]));
      if (failed == SIZE_MAX) finish(shards[k], r);
    } catch (const Exception& e) {
      note(k, e);
    }
  }
  if (failed != SIZE_MAX) throw Exception(code, describe(shards[failed]) + ": " + why);
}

namespace {

std::vector<size_t> with_keys(const Split& split) {
  std::vector<size_t> out;
  for (size_t s = 0; s < split.keys.size(); ++s)
    if (!split.keys[s].empty()) out.push_back(s);
  return out;
}

std::vector<size_t> every(size_t n) {
  std::vector<size_t> out(n);
  for (size_t s = 0; s < n; ++s) out[s] = s;
  return out;
}

bool found_and_fits(uint64_t size) { return size != KEY_NOT_FOUND && size != SIZE_TOO_SMALL; }

// Key order is checked before anything is sent: one empty key must fail the
// batch on the client, as it does against one provider.
void check_keys(int32_t m, const Keys& keys) {
  check_mode(m);
  for (const auto& k : keys)
    if (k.empty()) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "empty key");
}

}  // namespace

uint64_t ShardedDatabase::count(int32_t m, double timeout_ms) const {
  check_mode(m);
  uint64_t total = 0;
  fan_out(
      every(size()), rpc::kCount, m, timeout_ms,
      [m](size_t) {
        WireWriter w;
        w.put<int32_t>(m);
        return Request::meta_only(w.str());
      },
      [&total](size_t, Reply& r) {
        WireReader in(r.meta);
        total += in.get<uint64_t>();
        if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed count reply");
      });
  return total;
}

void ShardedDatabase::put(int32_t m, const Keys& keys, const Keys& values,
                          double timeout_ms) const {
  if (keys.size() != values.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "keys and values differ in number");
  check_keys(m, keys);
  Split split(*this, keys);
  fan_out(
      with_keys(split), rpc::kPut, m, timeout_ms,
      [&](size_t s) {
        auto req = std::make_unique<KeyRequest>(m, split.keys[s]);
        req->body.add_items(split.pick(s, values), req->meta);
        return Request::with_keys(std::move(req));
      },
      [](size_t, Reply&) {});
}

std::vector<uint64_t> ShardedDatabase::get(int32_t m, const Keys& keys,
                                           const std::vector<Destination>& out,
                                           double timeout_ms) const {
  if (keys.size() != out.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "keys and buffers differ in number");
  check_keys(m, keys);
  Split split(*this, keys);
  std::vector<uint64_t> sizes(keys.size(), KEY_NOT_FOUND);
  fan_out(
      with_keys(split), rpc::kGet, m, timeout_ms,
      [&](size_t s) {
        std::vector<uint64_t> caps;
        for (size_t p : split.positions[s]) caps.push_back(out[p].size);
        return Request::with_keys(
            std::make_unique<KeyRequest>(get_request(m, split.keys[s], false, caps)));
      },
      [&](size_t s, Reply& r) {
        const auto& pos = split.positions[s];
        auto got = decode_sizes(r.meta, pos.size());
        const char* src = r.body.data();
        size_t left = r.body.size();
        for (size_t j = 0; j < pos.size(); ++j) {
          sizes[pos[j]] = got[j];
          if (!found_and_fits(got[j]) || got[j] > out[pos[j]].size) continue;
          if (got[j] > left) throw Exception(Status::YOKAN_ERR_CORRUPTION, "short get reply");
          copy_bytes(out[pos[j]].data, src, got[j]);
          src += got[j];
          left -= got[j];
        }
      });
  return sizes;
}

// The values of every shard's packed reply, by key position: where each
// found value starts in its shard's body.
struct ShardedDatabase::PackedValues {
  std::vector<Buffer> bodies;         // per shard
  std::vector<uint64_t> sizes;        // per key
  std::vector<const char*> location;  // per key, null when not sent

  explicit PackedValues(size_t shards, size_t keys)
      : bodies(shards), sizes(keys, KEY_NOT_FOUND), location(keys, nullptr) {}

  void take(const Split& split, size_t s, Reply& r) {
    const auto& pos = split.positions[s];
    auto got = decode_sizes(r.meta, pos.size());
    bodies[s] = std::move(r.body);
    const char* at = bodies[s].data();
    size_t left = bodies[s].size();
    for (size_t j = 0; j < pos.size(); ++j) {
      sizes[pos[j]] = got[j];
      if (!found_and_fits(got[j])) continue;
      if (got[j] > left) throw Exception(Status::YOKAN_ERR_CORRUPTION, "short get reply");
      location[pos[j]] = at;
      at += got[j];
      left -= got[j];
    }
  }
};

ShardedDatabase::PackedValues ShardedDatabase::get_values(int32_t m, const Keys& keys,
                                                          uint64_t capacity,
                                                          double timeout_ms) const {
  check_keys(m, keys);
  Split split(*this, keys);
  PackedValues values(size(), keys.size());
  fan_out(
      with_keys(split), rpc::kGet, m, timeout_ms,
      [&](size_t s) {
        return Request::with_keys(
            std::make_unique<KeyRequest>(get_request(m, split.keys[s], true, {capacity})));
      },
      [&](size_t s, Reply& r) { values.take(split, s, r); });
  return values;
}

void ShardedDatabase::fan_out_keys(
    uint16_t rpc, int32_t m, const Keys& keys, double timeout_ms,
    const std::function<void(const std::vector<size_t>&, Reply&)>& finish) const {
  check_keys(m, keys);
  Split split(*this, keys);
  fan_out(
      with_keys(split), rpc, m, timeout_ms,
      [&](size_t s) { return Request::with_keys(std::make_unique<KeyRequest>(m, split.keys[s])); },
      [&](size_t s, Reply& r) { finish(split.positions[s], r); });
}

std::vector<uint64_t> ShardedDatabase::get_packed(int32_t m, const Keys& keys, Destination out,
                                                  double timeout_ms) const {
  PackedValues replies = get_values(m, keys, out.size, timeout_ms);
  // Back to back in key order; as with one provider, once a value does not
  // fit, every later found value is SIZE_TOO_SMALL.
  std::vector<uint64_t>& sizes = replies.sizes;
  char* at = static_cast<char*>(out.data);
  uint64_t room = out.size;
  bool overflowed = false;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (sizes[i] == KEY_NOT_FOUND) continue;
    if (overflowed || sizes[i] == SIZE_TOO_SMALL || sizes[i] > room) {
      sizes[i] = SIZE_TOO_SMALL;
      overflowed = true;
      continue;
    }
    copy_bytes(at, replies.location[i], sizes[i]);
    at += sizes[i];
    room -= sizes[i];
  }
  return sizes;
}

std::vector<uint64_t> ShardedDatabase::get_alloc(int32_t m, const Keys& keys, Buffer* values,
                                                 double timeout_ms) const {
  PackedValues replies = get_values(m, keys, UINT64_MAX, timeout_ms);
  size_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i)
    if (replies.location[i]) total += replies.sizes[i];
  Buffer all(total);
  char* at = all.data();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!replies.location[i]) continue;
    copy_bytes(at, replies.location[i], replies.sizes[i]);
    at += replies.sizes[i];
  }
  *values = std::move(all);
  return replies.sizes;
}

std::vector<bool> ShardedDatabase::exists(int32_t m, const Keys& keys, double timeout_ms) const {
  std::vector<bool> out(keys.size(), false);
  fan_out_keys(rpc::kExists, m, keys, timeout_ms, [&](const std::vector<size_t>& pos, Reply& r) {
    if (r.meta.size() != pos.size())
      throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed exists reply");
    for (size_t j = 0; j < pos.size(); ++j) out[pos[j]] = r.meta[j] != 0;
  });
  return out;
}

std::vector<uint64_t> ShardedDatabase::length(int32_t m, const Keys& keys,
                                              double timeout_ms) const {
  std::vector<uint64_t> out(keys.size(), KEY_NOT_FOUND);
  fan_out_keys(rpc::kLength, m, keys, timeout_ms, [&](const std::vector<size_t>& pos, Reply& r) {
    auto got = decode_sizes(r.meta, pos.size());
    for (size_t j = 0; j < pos.size(); ++j) out[pos[j]] = got[j];
  });
  return out;
}

void ShardedDatabase::erase(int32_t m, const Keys& keys, double timeout_ms) const {
  fan_out_keys(rpc::kErase, m, keys, timeout_ms, [](const std::vector<size_t>&, Reply&) {});
}

void ShardedDatabase::erase_range(int32_t m, std::string_view prefix, double timeout_ms) const {
  check_mode(m);
  fan_out(
      every(size()), rpc::kEraseRange, m, timeout_ms,
      [&](size_t) {
        WireWriter w;
        w.put<int32_t>(m);
        w.bytes(prefix);
        return Request::meta_only(w.str());
      },
      [](size_t, Reply&) {});
}

}  // namespace yokan
