// Document collections, one layer above the key/value backend, so that every
// backend that stores values has them.
//
// Storage model:
//   * metadata under the bare collection name: 16 bytes {size u64, next_id u64}
//     (host order). A collection exists iff that key holds exactly 16 bytes.
//   * document `id` under name + 0x00 + the 8-byte big-endian id, so sorted
//     backends list a collection's documents in id order; unsorted backends
//     probe ids (or scan, when the id range is much larger than the store).
// Ids are 0, 1, 2, ... per collection and never reused. Every operation that
// changes a collection's metadata holds write_order exclusively, reads hold it
// shared; responses are sent after the lock is released. Each write (store,
// update, erase, drop) is one backend batch that carries the documents and the
// metadata together, so on a backend with atomic batches a failure or a crash
// never leaves documents behind an old next_id or a size that does not count
// them.
//
// Every meta starts with [mode i32][name bytes]; then, by RPC:
//   kCollCreate, kCollDrop: nothing.           kCollInfo: reply [exists u8][size][next_id]
//   kDocStore:  [doc sizes]; body: docs.       reply [ids]
//   kDocUpdate: [ids][doc sizes]; body: docs.
//   kDocLoad:   [ids][packed u8][capacities: one if packed, else one per id]
//               reply [sizes, KEY_NOT_FOUND / SIZE_TOO_SMALL]; body: the docs that fit
//   kDocLength: [ids]                          reply [sizes or KEY_NOT_FOUND]
//   kDocErase:  [ids]
//   kDocList:   [start_id][filter bytes][count][packed u8][capacities]
//               reply [ids][sizes] (fewer than count: the end); body: the docs that fit
#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "server/provider_impl.hpp"

namespace yokan {

namespace {

constexpr int32_t kDocModes = mode::INCLUSIVE | mode::NO_RDMA | mode::UPDATE_NEW |
                              mode::LUA_FILTER | mode::LIB_FILTER | mode::FILTER_VALUE;
// Unsorted backends probe ids one by one when the id range is at most this
// large; past it they scan the whole store instead.
constexpr uint64_t kMaxProbes = uint64_t(1) << 20;

struct CollMeta {
  uint64_t size = 0;
  uint64_t next_id = 0;
};

std::string doc_key(std::string_view name, uint64_t id) {
  std::string k;
  k.reserve(name.size() + 9);
  k.append(name.data(), name.size());
  k.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) k.push_back(static_cast<char>(id >> shift));
  return k;
}

// The id of a document key of collection `name`, or false if it is not one.
bool doc_id(std::string_view name, std::string_view key, uint64_t* id) {
  if (key.size() != name.size() + 9 || key.compare(0, name.size(), name) != 0 ||
      key[name.size()] != '\0')
    return false;
  uint64_t v = 0;
  for (size_t i = name.size() + 1; i < key.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(key[i]);
  *id = v;
  return true;
}

std::string encode_meta(const CollMeta& m) {
  std::string v(16, '\0');
  std::memcpy(v.data(), &m.size, 8);
  std::memcpy(v.data() + 8, &m.next_id, 8);
  return v;
}

// Places items (slots or one packed area) the way get and list do.
struct Placer {
  bool packed;
  const std::vector<uint64_t>& caps;
  uint64_t room;
  bool overflow = false;
  Placer(bool packed, const std::vector<uint64_t>& caps)
      : packed(packed), caps(caps), room(packed ? caps[0] : 0) {}
  uint64_t place(size_t slot, std::string_view data, Buffer* out) {
    uint64_t cap = packed ? room : caps[slot];
    if (overflow || data.size() > cap) {
      if (packed) overflow = true;
      return SIZE_TOO_SMALL;
    }
    out->append(data.data(), data.size());
    if (packed) room -= data.size();
    return data.size();
  }
};

}  // namespace

void ProviderImpl::handle_documents(RequestPtr req) {
  const uint16_t op = req->rpc();
  WireReader in(req->meta());
  const int32_t m = in.get<int32_t>();
  const std::string_view name = in.bytes();
  if (!in.ok()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
  if (m & ~kDocModes) return req->respond(Status::YOKAN_ERR_MODE);
  if (name.empty() || name.find('\0') != std::string_view::npos)
    return req->respond(Status::YOKAN_ERR_INVALID_ARGS,
                        "a collection name must be non-empty and contain no NUL byte");
  // Pinned so that it survives a restore meanwhile; re-read under write_order,
  // so that a write never lands in a database that was replaced or detached.
  std::shared_ptr<Backend> backend = pin();
  if (!backend->traits().values)
    return req->respond(Status::YOKAN_ERR_OP_UNSUPPORTED,
                        "this backend stores no values, so it has no collections");

  // Reads the metadata; KEY_NOT_FOUND when the collection does not exist.
  auto read_meta = [&](CollMeta* meta) {
    bool good = false;
    Status s = backend->get(name, [&](std::string_view v) {
      if (v.size() != 16) return;
      std::memcpy(&meta->size, v.data(), 8);
      std::memcpy(&meta->next_id, v.data() + 8, 8);
      good = true;
    });
    if (ok(s) && !good) s = Status::YOKAN_ERR_KEY_NOT_FOUND;
    return s;
  };
  // Keys of every document of the collection (any order).
  auto collect_doc_keys = [&](std::vector<std::string>* keys) {
    const bool sorted = (backend->traits().sorted && backend->traits().bytewise);
    std::string start(name);
    start.push_back('\0');
    return backend->iterate(sorted ? std::string_view(start) : std::string_view(), true, false,
                            [&](std::string_view k, std::string_view) {
                              if (sorted && k.compare(0, start.size(), start) != 0) return false;
                              uint64_t id;
                              if (doc_id(name, k, &id)) keys->emplace_back(k);
                              return true;
                            });
  };
  // The document sizes of a store/update request, sliced out of the body.
  auto read_docs = [&](std::vector<std::string_view>* docs) {
    auto sizes = in.array<uint64_t>(rpc::kMaxBatch);
    if (!in.ok()) return false;
    std::string_view body = req->body();
    docs->resize(sizes.size());
    std::string_view* doc = docs->data();
    return slice_by_sizes(body, sizes, true, [doc](size_t i, std::string_view d) { doc[i] = d; }) ==
           body.size();
  };

  Status s = Status::YOKAN_SUCCESS;
  std::string error;
  WireWriter out;
  Buffer body;

  switch (op) {
    case rpc::kCollCreate: {
      if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::unique_lock<std::shared_mutex> g(write_order);
      backend = this->backend;
      bool found = false;
      s = backend->exists(name, &found);
      if (ok(s) && found) s = Status::YOKAN_ERR_KEY_EXISTS;
      if (ok(s)) s = backend->put(name, encode_meta(CollMeta{}));
      break;
    }
    case rpc::kCollDrop: {
      if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::unique_lock<std::shared_mutex> g(write_order);
      backend = this->backend;
      CollMeta meta;
      s = read_meta(&meta);
      std::vector<std::string> keys;
      if (ok(s)) s = collect_doc_keys(&keys);
      if (!ok(s)) break;
      // One batch, the metadata with the documents: a failed drop leaves the
      // collection whole (on backends with atomic batches).
      std::vector<std::string_view> doomed(keys.begin(), keys.end());
      doomed.push_back(name);
      s = backend->erase_batch(doomed);
      break;
    }
    case rpc::kCollInfo: {
      if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      CollMeta meta;
      {
        std::shared_lock<std::shared_mutex> g(write_order);
        backend = this->backend;
        s = read_meta(&meta);
      }
      const bool exists = ok(s);
      if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) s = Status::YOKAN_SUCCESS;
      out.put<uint8_t>(exists).put<uint64_t>(meta.size).put<uint64_t>(meta.next_id);
      break;
    }
    case rpc::kDocStore: {
      std::vector<std::string_view> docs;
      if (!read_docs(&docs) || !in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::vector<uint64_t> ids;
      {
        std::unique_lock<std::shared_mutex> g(write_order);
        backend = this->backend;
        CollMeta meta;
        s = read_meta(&meta);
        if (ok(s) && docs.size() >= UINT64_MAX - meta.next_id) s = Status::YOKAN_ERR_INVALID_ID;
        if (ok(s) && !docs.empty()) {
          std::vector<std::string> keys;
          keys.reserve(docs.size());
          std::vector<std::pair<std::string_view, std::string_view>> pairs;
          pairs.reserve(docs.size() + 1);
          for (size_t i = 0; i < docs.size(); ++i) {
            ids.push_back(meta.next_id + i);
            keys.push_back(doc_key(name, meta.next_id + i));
          }
          for (size_t i = 0; i < docs.size(); ++i) pairs.emplace_back(keys[i], docs[i]);
          meta.next_id += docs.size();
          meta.size += docs.size();
          std::string mv = encode_meta(meta);
          pairs.emplace_back(name, mv);
          s = backend->put_batch(pairs);
        }
      }
      out.array(ids);
      break;
    }
    case rpc::kDocUpdate: {
      auto ids = in.array<uint64_t>(rpc::kMaxBatch);
      std::vector<std::string_view> docs;
      if (!read_docs(&docs) || !in.done() || docs.size() != ids.size())
        return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::unique_lock<std::shared_mutex> g(write_order);
      backend = this->backend;
      CollMeta meta;
      s = read_meta(&meta);
      if (!ok(s) || ids.empty()) break;
      const CollMeta before = meta;
      std::vector<std::string> keys;
      keys.reserve(ids.size());  // never reallocated: `absent` points into it
      // Absent ids seen so far, so that one repeated in the batch counts once
      // (a set: comparing each with all before it took minutes for 10^5 ids).
      std::unordered_set<std::string_view> absent;
      for (uint64_t id : ids) {
        if (id == UINT64_MAX || (id >= meta.next_id && !(m & mode::UPDATE_NEW))) {
          s = Status::YOKAN_ERR_INVALID_ID;
          error = "document id " + std::to_string(id) + " was never allocated";
          break;
        }
        keys.push_back(doc_key(name, id));
        bool found = false;
        s = backend->exists(keys.back(), &found);
        if (!ok(s)) break;
        // An id that was erased, or (UPDATE_NEW) never stored, becomes live again.
        if (!found && absent.insert(keys.back()).second) ++meta.size;
        meta.next_id = std::max(meta.next_id, id + 1);
      }
      if (!ok(s)) break;
      std::vector<std::pair<std::string_view, std::string_view>> pairs;
      for (size_t i = 0; i < ids.size(); ++i) pairs.emplace_back(keys[i], docs[i]);
      std::string mv = encode_meta(meta);
      if (meta.size != before.size || meta.next_id != before.next_id) pairs.emplace_back(name, mv);
      s = backend->put_batch(pairs);
      break;
    }
    case rpc::kDocLoad: {
      auto ids = in.array<uint64_t>(rpc::kMaxBatch);
      const bool packed = in.get<uint8_t>();
      auto caps = in.array<uint64_t>(rpc::kMaxBatch);
      if (!in.done() || caps.size() != (packed ? 1 : ids.size()))
        return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::vector<uint64_t> sizes(ids.size(), KEY_NOT_FOUND);
      {
        std::shared_lock<std::shared_mutex> g(write_order);
        backend = this->backend;
        CollMeta meta;
        s = read_meta(&meta);
        Placer placer(packed, caps);
        for (size_t i = 0; ok(s) && i < ids.size(); ++i) {
          if (ids[i] >= meta.next_id) continue;
          s = backend->get(doc_key(name, ids[i]),
                           [&](std::string_view v) { sizes[i] = placer.place(i, v, &body); });
          if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) s = Status::YOKAN_SUCCESS;
        }
      }
      out.array(sizes);
      break;
    }
    case rpc::kDocLength: {
      auto ids = in.array<uint64_t>(rpc::kMaxBatch);
      if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::vector<uint64_t> sizes(ids.size(), KEY_NOT_FOUND);
      {
        std::shared_lock<std::shared_mutex> g(write_order);
        backend = this->backend;
        CollMeta meta;
        s = read_meta(&meta);
        for (size_t i = 0; ok(s) && i < ids.size(); ++i) {
          if (ids[i] >= meta.next_id) continue;
          size_t n = 0;
          s = backend->length(doc_key(name, ids[i]), &n);
          if (ok(s)) sizes[i] = n;
          if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) s = Status::YOKAN_SUCCESS;
        }
      }
      out.array(sizes);
      break;
    }
    case rpc::kDocErase: {
      auto ids = in.array<uint64_t>(rpc::kMaxBatch);
      if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::unique_lock<std::shared_mutex> g(write_order);
      backend = this->backend;
      CollMeta meta;
      s = read_meta(&meta);
      if (!ok(s)) break;
      // The live documents among the ids (each once), erased in one batch
      // with the new size: all of them and the size, or (on backends with
      // atomic batches) nothing.
      std::sort(ids.begin(), ids.end());
      ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
      std::vector<std::string> keys;
      for (size_t i = 0; ok(s) && i < ids.size(); ++i) {
        if (ids[i] >= meta.next_id) continue;
        std::string k = doc_key(name, ids[i]);
        bool found = false;
        s = backend->exists(k, &found);
        if (ok(s) && found) keys.push_back(std::move(k));
      }
      if (!ok(s) || keys.empty()) break;
      meta.size -= std::min<uint64_t>(meta.size, keys.size());
      std::vector<std::string_view> doomed(keys.begin(), keys.end());
      const std::string mv = encode_meta(meta);
      s = backend->write_batch(doomed, {{name, mv}});
      break;
    }
    case rpc::kDocList: {
      const uint64_t start = in.get<uint64_t>();
      const std::string_view filter_text = in.bytes();
      const uint64_t count = in.get<uint64_t>();
      const bool packed = in.get<uint8_t>();
      auto caps = in.array<uint64_t>(rpc::kMaxBatch);
      if (!in.done() || count > rpc::kMaxBatch || caps.size() != (packed ? 1 : count))
        return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      std::unique_ptr<DocFilter> filter;
      s = make_doc_filter(m, filter_text, lua_limits, &filter, &error);
      if (!ok(s)) break;
      std::vector<uint64_t> ids, sizes;
      {
        std::shared_lock<std::shared_mutex> g(write_order);
        backend = this->backend;
        CollMeta meta;
        s = read_meta(&meta);
        const bool nothing = !ok(s) || count == 0 || start >= meta.next_id;
        Placer placer(packed, caps);
        // Offers one document; false once the page is full or the filter failed.
        auto offer = [&](uint64_t id, std::string_view doc) {
          if (filter && !filter->accept(name, id, doc)) return ok(filter->failed());
          sizes.push_back(placer.place(ids.size(), doc, &body));
          ids.push_back(id);
          return ids.size() < count;
        };
        if (nothing) {
          // an empty page (or the error in s)
        } else if ((backend->traits().sorted && backend->traits().bytewise)) {
          std::string from = doc_key(name, start);
          std::string prefix(name);
          prefix.push_back('\0');
          s = backend->iterate(from, true, true, [&](std::string_view k, std::string_view v) {
            if (k.compare(0, prefix.size(), prefix) != 0) return false;
            uint64_t id;
            if (!doc_id(name, k, &id)) return true;
            return offer(id, v);
          });
        } else if (meta.next_id - start <= kMaxProbes) {
          bool more = true;
          for (uint64_t id = start; ok(s) && more && id < meta.next_id; ++id) {
            s = backend->get(doc_key(name, id), [&](std::string_view v) { more = offer(id, v); });
            if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) s = Status::YOKAN_SUCCESS;
          }
        } else {
          // A sparse id range (UPDATE_NEW far ahead): scan for the ids instead.
          std::vector<uint64_t> found;
          s = backend->iterate({}, true, false, [&](std::string_view k, std::string_view) {
            uint64_t id;
            if (doc_id(name, k, &id) && id >= start) found.push_back(id);
            return true;
          });
          std::sort(found.begin(), found.end());
          bool more = true;
          for (size_t i = 0; ok(s) && more && i < found.size(); ++i) {
            s = backend->get(doc_key(name, found[i]),
                             [&](std::string_view v) { more = offer(found[i], v); });
            if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) s = Status::YOKAN_SUCCESS;
          }
        }
      }
      if (ok(s) && filter && !ok(filter->failed())) {
        s = filter->failed();
        error = filter->message();
      }
      out.array(ids);
      out.array(sizes);
      break;
    }
    default:
      s = Status::YOKAN_ERR_OP_UNSUPPORTED;
  }
  if (!ok(s)) return req->respond(s, error.empty() ? why(s) : error);
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()), std::move(body));
}

// Document filter selection: Lua with LUA_FILTER, otherwise none (every
// document passes and the filter bytes are ignored).
Status make_doc_filter(int32_t m, std::string_view filter, const LuaLimits& limits,
                       std::unique_ptr<DocFilter>* out, std::string* error) {
  out->reset();
  if (m & mode::LUA_FILTER) return make_lua_doc_filter(filter, limits, out, error);
  if (m & mode::LIB_FILTER) return lib_filter_unsupported(error);
  return Status::YOKAN_SUCCESS;
}

}  // namespace yokan
