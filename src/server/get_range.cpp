#include <mutex>

#include "server/provider_impl.hpp"

namespace yokan {

namespace {
// The part of a value of `size` bytes that a range asks for, clipped to it:
// [offset, offset + length), or with `from_end` the last min(length, size)
// bytes. Written so that no sum can wrap (offset and length come off the wire).
std::pair<uint64_t, uint64_t> clip(uint64_t size, uint64_t offset, uint64_t length, bool from_end) {
  if (from_end) {
    const uint64_t n = length < size ? length : size;
    return {size - n, n};
  }
  if (offset >= size) return {size, 0};
  const uint64_t left = size - offset;
  return {offset, length < left ? length : left};
}
}  // namespace

// meta [mode][count = 1][key size][offset u64][length u64][from_end u8]; body:
// the key. Reply meta [the value's full size, or KEY_NOT_FOUND]; body: only
// the requested bytes. The backend may still read the whole value here (the
// Backend interface has no ranged read); what this saves is the transfer,
// and a backend that lends its values (see Backend::lend) sends the range
// straight from its own memory, with no copy.
void ProviderImpl::handle_get_range(RequestPtr req) {
  // Registered outside the key/value id span that register_handlers refuses
  // for document-only backends, so refused here, with the same words. Pinned:
  // a restore may replace the database meanwhile.
  if (!pin()->traits().key_value)
    return req->respond(Status::YOKAN_ERR_OP_UNSUPPORTED,
                        "this backend stores documents only (use collections)");
  WireReader in(req->meta());
  KeyBatch batch;
  size_t used = 0;
  Status s = decode_key_batch(in, req->body(), &batch, &used);
  const uint64_t offset = in.get<uint64_t>();
  const uint64_t length = in.get<uint64_t>();
  const uint8_t from_end = in.get<uint8_t>();
  if (ok(s) && (!in.done() || used != req->body().size() || batch.keys.size() != 1 || from_end > 1))
    s = Status::YOKAN_ERR_INVALID_ARGS;
  if (!ok(s)) return req->respond(s);
  // A ranged read never erases: CONSUME would hand out part of a value and
  // drop the rest (and would be a write a read-only provider must refuse).
  if (batch.mode & mode::CONSUME)
    return req->respond(Status::YOKAN_ERR_MODE, "get_range does not take CONSUME");
  if (park_if_missing(req, batch)) return;

  std::shared_ptr<const void> owner;
  std::string_view lent;
  uint64_t size = 0;
  Buffer body;
  {
    std::shared_lock<std::shared_mutex> g(write_order);
    s = backend->lend(
        batch.keys[0],
        [&](std::string_view v) {
          size = v.size();
          auto [at, n] = clip(v.size(), offset, length, from_end != 0);
          if (owner)
            lent = v.substr(at, n);
          else
            body.append(v.data() + at, n);
        },
        &owner);
  }
  if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) {
    size = KEY_NOT_FOUND;
  } else if (!ok(s)) {
    return req->respond(s, why(s));
  } else if (owner && !lent.empty()) {
    body = Buffer::borrow(std::move(owner), lent.data(), lent.size());
  }
  WireWriter out;
  out.array({size});
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()), std::move(body));
}

}  // namespace yokan
