#include "corpus.hpp"

#include <cstring>

#include "common/rpc.hpp"
#include "common/wire.hpp"
#include "engine/wire_format.hpp"
#include "yokan/common.hpp"

namespace yokan::fuzz {

namespace {

// WireWriter that also records where each length, count and size field went.
class Meta {
 public:
  template <typename T>
  Meta& put(T v) {
    w_.put<T>(v);
    return *this;
  }
  Meta& mode(int32_t m) { return put<int32_t>(m); }
  Meta& count(uint64_t n) {
    mark(8);
    return put<uint64_t>(n);
  }
  Meta& bytes(std::string_view s) {
    mark(8);
    w_.bytes(s);
    return *this;
  }
  Meta& array(const std::vector<uint64_t>& v) {
    const size_t at = w_.str().size();
    w_.array(v);
    fields_.push_back({uint32_t(at), 8});  // item count
    const size_t width = v.empty() ? 1 : (w_.str().size() - at - 9) / v.size();
    for (size_t i = 0; i < v.size() && i < 64; ++i)
      fields_.push_back({uint32_t(at + 9 + i * width), uint8_t(width)});
    return *this;
  }
  Seed seed(std::string name, uint16_t rpc, uint16_t provider, std::string body = {},
            uint32_t timeout_ms = 0) {
    return Seed{std::move(name), kAmRequest,         rpc,       provider, std::move(w_.str()),
                std::move(body), std::move(fields_), timeout_ms};
  }

 private:
  void mark(uint8_t width) { fields_.push_back({uint32_t(w_.str().size()), width}); }
  WireWriter w_;
  std::vector<Field> fields_;
};

std::vector<uint64_t> sizes_of(const std::vector<std::string>& items) {
  std::vector<uint64_t> v;
  for (auto& s : items) v.push_back(s.size());
  return v;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (auto& s : items) out += s;
  return out;
}

std::vector<std::string> keys(const std::string& stem, size_t n) {
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i) v.push_back(stem + std::to_string(i));
  return v;
}

// Seeds of the key/value RPCs against provider `id`.
void add_key_value(std::vector<Seed>& out, uint16_t id) {
  using namespace mode;
  const auto one = keys("fz", 1), few = keys("fz", 8), many = keys("k", 700);
  const std::vector<std::string> values = {"v0", "",  std::string(300, 'x'), "v3", "v4", "v5",
                                           "v6", "v7"};
  const std::string big(100 * 1024, 'B');  // a rendezvous-sized value

  out.push_back(Meta().mode(0).seed("count", rpc::kCount, id));
  out.push_back(Meta().seed("identify", rpc::kIdentify, id));
  for (int32_t m : {0, NEW_ONLY, EXIST_ONLY, APPEND}) {
    out.push_back(Meta()
                      .mode(m)
                      .array(sizes_of(few))
                      .array(sizes_of(values))
                      .seed("put/multi", rpc::kPut, id, joined(few) + joined(values)));
  }
  out.push_back(
      Meta().mode(0).array({2}).array({big.size()}).seed("put/large", rpc::kPut, id, "fz" + big));
  {
    std::vector<std::string> vals(many.size(), "val");
    out.push_back(Meta()
                      .mode(0)
                      .array(sizes_of(many))
                      .array(sizes_of(vals))
                      .seed("put/700", rpc::kPut, id, joined(many) + joined(vals)));
  }
  // get: slots and packed; CONSUME; WAIT with a deadline (an absent key parks).
  for (int32_t m : {0, CONSUME, WAIT}) {
    out.push_back(Meta()
                      .mode(m)
                      .array(sizes_of(one))
                      .put<uint8_t>(0)
                      .array({64})
                      .seed("get/one", rpc::kGet, id, joined(one), m & WAIT ? 50 : 0));
    out.push_back(Meta()
                      .mode(m)
                      .array(sizes_of(few))
                      .put<uint8_t>(0)
                      .array(std::vector<uint64_t>(few.size(), 512))
                      .seed("get/multi", rpc::kGet, id, joined(few), m & WAIT ? 50 : 0));
  }
  out.push_back(Meta()
                    .mode(0)
                    .array(sizes_of(few))
                    .put<uint8_t>(1)
                    .array({4096})
                    .seed("get/packed", rpc::kGet, id, joined(few)));
  out.push_back(Meta()
                    .mode(0)
                    .array(sizes_of(many))
                    .put<uint8_t>(1)
                    .array({1 << 20})
                    .seed("get/700", rpc::kGet, id, joined(many)));
  for (uint16_t r : {rpc::kExists, rpc::kLength, rpc::kErase}) {
    const char* n = r == rpc::kExists ? "exists" : r == rpc::kLength ? "length" : "erase";
    out.push_back(Meta().mode(0).array(sizes_of(few)).seed(n, r, id, joined(few)));
    out.push_back(Meta()
                      .mode(WAIT)
                      .array(sizes_of(one))
                      .seed(std::string(n) + "/wait", r, id, joined(one), 50));
  }
  out.push_back(Meta().mode(0).bytes("zz").seed("erase_range", rpc::kEraseRange, id));
  // list: slots, packed, with values, suffix, Lua, KEEP_LAST.
  auto list = [&](const char* n, int32_t m, std::string from, std::string filter, uint64_t count,
                  bool values, bool packed) {
    Meta meta;
    meta.mode(m).bytes(from).bytes(filter).count(count).put<uint8_t>(values).put<uint8_t>(packed);
    std::vector<uint64_t> caps(packed ? 1 : count, packed ? 8192 : 64);
    meta.array(caps).array(values ? caps : std::vector<uint64_t>());
    out.push_back(meta.seed(n, rpc::kList, id));
  };
  list("list/keys", 0, "", "fz", 8, false, false);
  list("list/keyvals", INCLUSIVE, "fz1", "", 8, true, false);
  list("list/packed", 0, "", "k", 100, true, true);
  list("list/suffix", SUFFIX, "", "3", 8, false, false);
  list("list/keep_last", KEEP_LAST | NO_PREFIX, "", "fz", 4, true, false);
  list("list/lua", LUA_FILTER, "", "return #__key__ > 2", 8, true, false);
}

// Seeds of the document RPCs against provider `id`.
void add_documents(std::vector<Seed>& out, uint16_t id) {
  using namespace mode;
  const std::string name = "coll";
  const std::vector<std::string> docs = {"{\"a\":1}", "{}", std::string(200, 'd')};
  auto head = [&](int32_t m) {
    Meta meta;
    meta.mode(m).bytes(name);
    return meta;
  };
  out.push_back(head(0).seed("coll_create", rpc::kCollCreate, id));
  out.push_back(head(0).seed("coll_drop", rpc::kCollDrop, id));
  out.push_back(head(0).seed("coll_info", rpc::kCollInfo, id));
  out.push_back(head(0).array(sizes_of(docs)).seed("doc_store", rpc::kDocStore, id, joined(docs)));
  for (int32_t m : {0, UPDATE_NEW})
    out.push_back(head(m)
                      .array({0, 1, 2})
                      .array(sizes_of(docs))
                      .seed("doc_update", rpc::kDocUpdate, id, joined(docs)));
  out.push_back(head(0)
                    .array({0, 1, 2, 7})
                    .put<uint8_t>(0)
                    .array({64, 64, 64, 64})
                    .seed("doc_load", rpc::kDocLoad, id));
  out.push_back(head(0).array({0, 1, 2}).put<uint8_t>(1).array({4096}).seed("doc_load/packed",
                                                                            rpc::kDocLoad, id));
  out.push_back(head(0).array({0, 1, 5}).seed("doc_length", rpc::kDocLength, id));
  out.push_back(head(0).array({1}).seed("doc_erase", rpc::kDocErase, id));
  for (int32_t m : {0, LUA_FILTER}) {
    Meta meta = head(m);
    meta.count(0).bytes(m ? "return true" : "").count(8).put<uint8_t>(0);
    meta.array(std::vector<uint64_t>(8, 256));
    out.push_back(meta.seed(m ? "doc_list/lua" : "doc_list", rpc::kDocList, id));
  }
  {
    Meta meta = head(0);
    meta.count(0).bytes("").count(100).put<uint8_t>(1).array({1 << 16});
    out.push_back(meta.seed("doc_list/packed", rpc::kDocList, id));
  }
}

}  // namespace

std::vector<Seed> make_corpus(const Providers& p, uint64_t token,
                              const std::string& worker_address) {
  std::vector<Seed> out;
  for (uint16_t id : {p.map, p.persistent, p.read_only}) {
    if (!id) continue;
    add_key_value(out, id);
    add_documents(out, id);
  }
  if (p.docs) add_documents(out, p.docs);
  // HELLO: meta [token u64][worker address], no body.
  std::string hello(8, '\0');
  std::memcpy(hello.data(), &token, 8);
  hello += worker_address;
  out.push_back(Seed{"hello", kAmHello, 0, 0, hello, {}, {}, 0});
  return out;
}

}  // namespace yokan::fuzz
