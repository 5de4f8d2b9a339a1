// Collection: the client side of the document RPCs (src/server/documents.cpp
// describes the wire layout).
#include <cstring>

#include "client/encode.hpp"
#include "yokan/collection.hpp"

namespace yokan {

namespace {

// meta [mode][name], after the checks every collection call makes first.
WireWriter header(int32_t m, const std::string& name) {
  check_mode(m);
  if (name.empty()) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "the collection name is empty");
  if (name.find('\0') != std::string::npos)
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "the collection name contains a NUL byte");
  WireWriter w;
  w.put<int32_t>(m);
  w.bytes(name);
  return w;
}

bool placed(uint64_t size) { return size != SIZE_TOO_SMALL && size != KEY_NOT_FOUND; }

// Capacities for a layout: one per destination, one packed, or unbounded.
std::vector<uint64_t> capacities(Collection::Layout layout, const std::vector<Destination>& out,
                                 size_t slots) {
  std::vector<uint64_t> caps;
  switch (layout) {
    case Collection::Layout::kSlots:
      if (out.size() != slots)
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "one buffer per document is needed");
      for (auto& d : out) caps.push_back(d.size);
      break;
    case Collection::Layout::kPacked:
      if (out.size() != 1)
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "one packed buffer is needed");
      caps.push_back(out[0].size);
      break;
    case Collection::Layout::kAlloc:
      caps.push_back(UINT64_MAX);
      break;
  }
  return caps;
}

// Copies the documents of a reply body into the caller's destinations, or
// into `data` for kAlloc.
void scatter_docs(const std::vector<uint64_t>& sizes, const Buffer& body, Collection::Layout layout,
                  const std::vector<Destination>& out, Buffer* data) {
  size_t total = 0;
  for (auto s : sizes)
    if (placed(s)) {
      if (s > body.size() - total) throw Exception(Status::YOKAN_ERR_CORRUPTION, "short reply");
      total += s;
    }
  if (total != body.size()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed reply");
  if (layout == Collection::Layout::kAlloc) {
    *data = Buffer(body.data(), body.size());
    return;
  }
  const char* src = body.data();
  char* packed = layout == Collection::Layout::kPacked ? static_cast<char*>(out[0].data) : nullptr;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!placed(sizes[i])) continue;
    if (sizes[i] && packed) {
      copy_bytes(packed, src, sizes[i]);
      packed += sizes[i];
    } else if (sizes[i]) {
      copy_bytes(out[i].data, src, sizes[i]);
    }
    src += sizes[i];
  }
}

// The documents as the body and their sizes appended to the meta.
RequestBody doc_body(const Keys& docs, WireWriter* w) {
  RequestBody body;
  body.add_items(docs, *w);
  return body;
}

}  // namespace

Collection::Collection(Database db, std::string name)
    : db_(std::move(db)), name_(std::move(name)) {}

Reply Collection::call(uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
                       double timeout_ms, int32_t m) const {
  return db_.call(rpc, meta, body, timeout_ms, m);
}

// Each RPC's encoder and decoder, shared by the blocking method and its
// two-step form.
namespace {
void no_result(Reply&) {}

bool exists_reply(const Reply& r) {
  WireReader in(r.meta);
  uint8_t found = in.get<uint8_t>();
  in.get<uint64_t>();
  in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed collection reply");
  return found != 0;
}

Collection::Info info_reply(const Reply& r, const std::string& name) {
  WireReader in(r.meta);
  uint8_t found = in.get<uint8_t>();
  Collection::Info info;
  info.size = in.get<uint64_t>();
  info.next_id = in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed collection reply");
  if (!found)
    throw Exception(Status::YOKAN_ERR_KEY_NOT_FOUND, "no collection named \"" + name + "\"");
  return info;
}

DocIds store_reply(const Reply& r, size_t n) {
  WireReader in(r.meta);
  DocIds ids = in.array<uint64_t>(n);
  if (!in.done() || ids.size() != n)
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed store reply");
  return ids;
}

WireWriter update_request(int32_t m, const std::string& name, const DocIds& ids, const Keys& docs,
                          RequestBody* body) {
  if (ids.size() != docs.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "ids and documents differ in number");
  WireWriter w = header(m, name);
  w.array(ids);
  *body = doc_body(docs, &w);
  return w;
}

WireWriter load_request(int32_t m, const std::string& name, const DocIds& ids,
                        Collection::Layout layout, const std::vector<Destination>& out) {
  WireWriter w = header(m, name);
  auto caps = capacities(layout, out, ids.size());
  w.array(ids);
  w.put<uint8_t>(layout != Collection::Layout::kSlots);
  w.array(caps);
  return w;
}

Collection::LoadResult load_reply(const Reply& r, size_t n, Collection::Layout layout,
                                  const std::vector<Destination>& out) {
  Collection::LoadResult result;
  result.sizes = decode_sizes(r.meta, n);
  scatter_docs(result.sizes, r.body, layout, out, &result.data);
  return result;
}

WireWriter ids_request(int32_t m, const std::string& name, const DocIds& ids) {
  WireWriter w = header(m, name);
  w.array(ids);
  return w;
}
}  // namespace

void Collection::create(int32_t m, double t) const {
  call(rpc::kCollCreate, header(m, name_).str(), {}, t, m);
}
Started<void> Collection::create_start(int32_t m, double t, const Completion& done) const {
  return {db_.start(rpc::kCollCreate, std::move(header(m, name_).str()), t, m, {}, done),
          no_result};
}

void Collection::drop(int32_t m, double t) const {
  call(rpc::kCollDrop, header(m, name_).str(), {}, t, m);
}
Started<void> Collection::drop_start(int32_t m, double t, const Completion& done) const {
  return {db_.start(rpc::kCollDrop, std::move(header(m, name_).str()), t, m, {}, done), no_result};
}

bool Collection::exists(int32_t m, double t) const {
  return exists_reply(call(rpc::kCollInfo, header(m, name_).str(), {}, t, m));
}
Started<bool> Collection::exists_start(int32_t m, double t, const Completion& done) const {
  return {db_.start(rpc::kCollInfo, std::move(header(m, name_).str()), t, m, {}, done),
          exists_reply};
}

Collection::Info Collection::info(int32_t m, double t) const {
  return info_reply(call(rpc::kCollInfo, header(m, name_).str(), {}, t, m), name_);
}
Started<Collection::Info> Collection::info_start(int32_t m, double t,
                                                 const Completion& done) const {
  return {db_.start(rpc::kCollInfo, std::move(header(m, name_).str()), t, m, {}, done),
          [name = name_](Reply& r) { return info_reply(r, name); }};
}

DocIds Collection::store(int32_t m, const Keys& docs, double t) const {
  WireWriter w = header(m, name_);
  RequestBody body = doc_body(docs, &w);
  return store_reply(call(rpc::kDocStore, w.str(), body.segments, t, m), docs.size());
}
Started<DocIds> Collection::store_start(int32_t m, const Keys& docs, double t,
                                        const Completion& done) const {
  WireWriter w = header(m, name_);
  RequestBody body = doc_body(docs, &w);
  const size_t n = docs.size();
  return {db_.start(rpc::kDocStore, std::move(w.str()), t, m, body.segments, done),
          [n](Reply& r) { return store_reply(r, n); }};
}

void Collection::update(int32_t m, const DocIds& ids, const Keys& docs, double t) const {
  RequestBody body;
  WireWriter w = update_request(m, name_, ids, docs, &body);
  call(rpc::kDocUpdate, w.str(), body.segments, t, m);
}
Started<void> Collection::update_start(int32_t m, const DocIds& ids, const Keys& docs, double t,
                                       const Completion& done) const {
  RequestBody body;
  WireWriter w = update_request(m, name_, ids, docs, &body);
  return {db_.start(rpc::kDocUpdate, std::move(w.str()), t, m, body.segments, done), no_result};
}

Collection::LoadResult Collection::load(int32_t m, const DocIds& ids, Layout layout,
                                        const std::vector<Destination>& out, double t) const {
  WireWriter w = load_request(m, name_, ids, layout, out);
  return load_reply(call(rpc::kDocLoad, w.str(), {}, t, m), ids.size(), layout, out);
}
Started<Collection::LoadResult> Collection::load_start(int32_t m, const DocIds& ids, Layout layout,
                                                       const std::vector<Destination>& out,
                                                       double t, const Completion& done) const {
  WireWriter w = load_request(m, name_, ids, layout, out);
  const size_t n = ids.size();
  return {db_.start(rpc::kDocLoad, std::move(w.str()), t, m, {}, done),
          [n, layout, out](Reply& r) { return load_reply(r, n, layout, out); }};
}

std::vector<uint64_t> Collection::length(int32_t m, const DocIds& ids, double t) const {
  Reply r = call(rpc::kDocLength, ids_request(m, name_, ids).str(), {}, t, m);
  return decode_sizes(r.meta, ids.size());
}
Started<std::vector<uint64_t>> Collection::length_start(int32_t m, const DocIds& ids, double t,
                                                        const Completion& done) const {
  const size_t n = ids.size();
  return {db_.start(rpc::kDocLength, std::move(ids_request(m, name_, ids).str()), t, m, {}, done),
          [n](Reply& r) { return decode_sizes(r.meta, n); }};
}

void Collection::erase(int32_t m, const DocIds& ids, double t) const {
  call(rpc::kDocErase, ids_request(m, name_, ids).str(), {}, t, m);
}
Started<void> Collection::erase_start(int32_t m, const DocIds& ids, double t,
                                      const Completion& done) const {
  return {db_.start(rpc::kDocErase, std::move(ids_request(m, name_, ids).str()), t, m, {}, done),
          no_result};
}

namespace {

// `w` holds the header already (checked before the buffers, as every call does).
WireWriter& list_request(WireWriter& w, uint64_t start_id, std::string_view filter, uint64_t count,
                         Collection::Layout layout, const std::vector<uint64_t>& caps) {
  w.put<uint64_t>(start_id);
  w.bytes(filter);
  w.put<uint64_t>(count);
  w.put<uint8_t>(layout != Collection::Layout::kSlots);
  w.array(caps);
  return w;
}

Collection::ListResult list_reply(const Reply& r, uint64_t count, Collection::Layout layout,
                                  const std::vector<Destination>& out) {
  WireReader in(r.meta);
  Collection::ListResult result;
  result.ids = in.array<uint64_t>(count);
  result.sizes = in.array<uint64_t>(count);
  if (!in.done() || result.ids.size() != result.sizes.size())
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed list reply");
  scatter_docs(result.sizes, r.body, layout, out, &result.data);
  return result;
}

}  // namespace

Collection::ListResult Collection::list(int32_t m, uint64_t start_id, std::string_view filter,
                                        uint64_t count, Layout layout,
                                        const std::vector<Destination>& out, double t) const {
  WireWriter w = header(m, name_);
  auto caps = capacities(layout, out, count);
  Reply r =
      call(rpc::kDocList, list_request(w, start_id, filter, count, layout, caps).str(), {}, t, m);
  return list_reply(r, count, layout, out);
}

Collection::PendingList Collection::list_start(int32_t m, uint64_t start_id,
                                               std::string_view filter, uint64_t count,
                                               Layout layout, const std::vector<Destination>& out,
                                               double t, const Completion& done) const {
  WireWriter w = header(m, name_);
  auto caps = capacities(layout, out, count);
  list_request(w, start_id, filter, count, layout, caps);
  return {db_.start(rpc::kDocList, std::move(w.str()), t, m, {}, done),
          [count, layout, out](Reply& r) { return list_reply(r, count, layout, out); }};
}

}  // namespace yokan
