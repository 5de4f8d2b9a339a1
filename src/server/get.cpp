#include <algorithm>
#include <mutex>

#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][key sizes][packed u8][capacities: one total if packed, else one
// per key]; body: keys. Reply meta [value sizes or KEY_NOT_FOUND /
// SIZE_TOO_SMALL]; body: the values that fit, back to back in key order.
// In packed mode, once a value does not fit, later found values are reported
// too small as well (so the caller's layout stays predictable).
void ProviderImpl::handle_get(RequestPtr req) {
  WireReader in(req->meta());
  KeyBatch batch;
  size_t used = 0;
  Status s = decode_key_batch(in, req->body(), &batch, &used);
  uint8_t packed = in.get<uint8_t>();
  auto caps = in.array<uint64_t>(rpc::kMaxBatch);
  if (ok(s) &&
      (!in.done() || used != req->body().size() || caps.size() != (packed ? 1 : batch.keys.size())))
    s = Status::YOKAN_ERR_INVALID_ARGS;
  if (!ok(s)) return req->respond(s);

  std::vector<uint64_t> sizes(batch.keys.size());
  Buffer body;
  // Room for what the caller can take (up to 1 MiB, a warm pooled block), so
  // a batch reply is not regrown and recopied value after value.
  uint64_t room = 0;
  for (uint64_t c : caps) room = c > UINT64_MAX - room ? UINT64_MAX : room + c;
  do {
    if (park_if_missing(req, batch)) return;
    if (batch.keys.size() == 1 && !(batch.mode & mode::CONSUME) &&
        respond_single(req, batch, caps[0]))
      return;
    body.resize(0);
    body.reserve(std::min<uint64_t>(room, uint64_t(1) << 20));
    s = read_values(batch, packed != 0, caps, &sizes, &body);
  } while (s == Status::YOKAN_ERR_TRY_AGAIN);  // WAIT|CONSUME lost a race: wait again
  if (!ok(s)) return req->respond(s, why(s));
  WireWriter out;
  out.array(sizes);
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()), std::move(body));
}

// One key: a single lookup, and a value the backend lends (a large one) goes
// to the transport as is, with no copy on the provider. False: the key is
// absent, left to read_values (WAIT, KEY_NOT_FOUND).
bool ProviderImpl::respond_single(RequestPtr& req, const KeyBatch& batch, uint64_t cap) {
  std::shared_ptr<const void> owner;
  std::string_view lent;
  uint64_t size = 0;
  Buffer body;
  Status s;
  {
    std::shared_lock<std::shared_mutex> g(write_order);
    s = backend->lend(
        batch.keys[0],
        [&](std::string_view v) {
          size = v.size() > cap ? SIZE_TOO_SMALL : v.size();
          if (size == SIZE_TOO_SMALL) return;
          if (owner)
            lent = v;
          else
            body.append(v.data(), v.size());
        },
        &owner);
  }
  if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) return false;
  if (!ok(s)) {
    req->respond(s, why(s));
    return true;
  }
  if (owner && size != SIZE_TOO_SMALL)
    body = Buffer::borrow(std::move(owner), lent.data(), lent.size());
  WireWriter out;
  out.array({size});
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()), std::move(body));
  return true;
}

Status ProviderImpl::read_values(const KeyBatch& batch, bool packed,
                                 const std::vector<uint64_t>& caps, std::vector<uint64_t>* sizes,
                                 Buffer* body) {
  const bool consume = batch.mode & mode::CONSUME;
  std::shared_lock<std::shared_mutex> shared(write_order, std::defer_lock);
  std::unique_lock<std::shared_mutex> exclusive(write_order, std::defer_lock);
  if (consume)
    exclusive.lock();
  else
    shared.lock();
  uint64_t room = packed ? caps[0] : 0;
  bool overflowed = false, missing = false;
  Status s = backend->get_batch(batch.keys, [&](size_t i, const std::string_view* v) {
    if (!v) {
      missing = true;
      (*sizes)[i] = KEY_NOT_FOUND;
      return;
    }
    uint64_t cap = packed ? room : caps[i];
    if (v->size() > cap || overflowed) {
      (*sizes)[i] = SIZE_TOO_SMALL;
      if (packed) overflowed = true;
      return;
    }
    (*sizes)[i] = v->size();
    body->append(v->data(), v->size());
    if (packed) room -= v->size();
  });
  if (!ok(s)) return s;
  if (missing && (batch.mode & mode::WAIT)) return Status::YOKAN_ERR_TRY_AGAIN;
  // A database that refuses writes (one migrating) has consumed nothing.
  if (consume) return backend->erase_batch(batch.keys);
  return Status::YOKAN_SUCCESS;
}

}  // namespace yokan
