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

void Collection::create(int32_t m, double t) const {
  call(rpc::kCollCreate, header(m, name_).str(), {}, t, m);
}

void Collection::drop(int32_t m, double t) const {
  call(rpc::kCollDrop, header(m, name_).str(), {}, t, m);
}

bool Collection::exists(int32_t m, double t) const {
  Reply r = call(rpc::kCollInfo, header(m, name_).str(), {}, t, m);
  WireReader in(r.meta);
  uint8_t found = in.get<uint8_t>();
  in.get<uint64_t>();
  in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed collection reply");
  return found != 0;
}

Collection::Info Collection::info(int32_t m, double t) const {
  Reply r = call(rpc::kCollInfo, header(m, name_).str(), {}, t, m);
  WireReader in(r.meta);
  uint8_t found = in.get<uint8_t>();
  Info info;
  info.size = in.get<uint64_t>();
  info.next_id = in.get<uint64_t>();
  if (!in.done()) throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed collection reply");
  if (!found)
    throw Exception(Status::YOKAN_ERR_KEY_NOT_FOUND, "no collection named \"" + name_ + "\"");
  return info;
}

DocIds Collection::store(int32_t m, const Keys& docs, double t) const {
  WireWriter w = header(m, name_);
  RequestBody body = doc_body(docs, &w);
  Reply r = call(rpc::kDocStore, w.str(), body.segments, t, m);
  WireReader in(r.meta);
  DocIds ids = in.array<uint64_t>(docs.size());
  if (!in.done() || ids.size() != docs.size())
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed store reply");
  return ids;
}

void Collection::update(int32_t m, const DocIds& ids, const Keys& docs, double t) const {
  if (ids.size() != docs.size())
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "ids and documents differ in number");
  WireWriter w = header(m, name_);
  w.array(ids);
  RequestBody body = doc_body(docs, &w);
  call(rpc::kDocUpdate, w.str(), body.segments, t, m);
}

Collection::LoadResult Collection::load(int32_t m, const DocIds& ids, Layout layout,
                                        const std::vector<Destination>& out, double t) const {
  WireWriter w = header(m, name_);
  auto caps = capacities(layout, out, ids.size());
  w.array(ids);
  w.put<uint8_t>(layout != Layout::kSlots);
  w.array(caps);
  Reply r = call(rpc::kDocLoad, w.str(), {}, t, m);
  LoadResult result;
  result.sizes = decode_sizes(r.meta, ids.size());
  scatter_docs(result.sizes, r.body, layout, out, &result.data);
  return result;
}

std::vector<uint64_t> Collection::length(int32_t m, const DocIds& ids, double t) const {
  WireWriter w = header(m, name_);
  w.array(ids);
  Reply r = call(rpc::kDocLength, w.str(), {}, t, m);
  return decode_sizes(r.meta, ids.size());
}

void Collection::erase(int32_t m, const DocIds& ids, double t) const {
  WireWriter w = header(m, name_);
  w.array(ids);
  call(rpc::kDocErase, w.str(), {}, t, m);
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
                                               double t) const {
  WireWriter w = header(m, name_);
  auto caps = capacities(Layout::kAlloc, {}, count);
  list_request(w, start_id, filter, count, Layout::kAlloc, caps);
  PendingList pending;
  pending.count_ = count;
  pending.call_ = db_.start(rpc::kDocList, std::move(w.str()), t, m);
  return pending;
}

Collection::ListResult Collection::PendingList::finish() {
  Reply r = Database::finish(std::move(call_));
  return list_reply(r, count_, Layout::kAlloc, {});
}

}  // namespace yokan
