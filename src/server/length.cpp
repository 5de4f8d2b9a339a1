#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][key sizes]; body: keys. Reply meta: [sizes], KEY_NOT_FOUND if absent.
void ProviderImpl::handle_length(RequestPtr req) {
  KeyBatch batch;
  Status s = decode_keys_only(*req, &batch);
  if (!ok(s)) return req->respond(s);
  if (park_if_missing(req, batch)) return;
  const std::shared_ptr<Backend> backend = pin();  // survives a restore meanwhile
  std::vector<uint64_t> sizes(batch.keys.size());
  for (size_t i = 0; i < batch.keys.size(); ++i) {
    size_t n = 0;
    s = backend->length(batch.keys[i], &n);
    if (s == Status::YOKAN_ERR_KEY_NOT_FOUND) {
      sizes[i] = KEY_NOT_FOUND;
    } else if (!ok(s)) {
      return req->respond(s, why(s));
    } else {
      sizes[i] = n;
    }
  }
  WireWriter out;
  out.array(sizes);
  req->respond(Status::YOKAN_SUCCESS, std::move(out.str()));
}

}  // namespace yokan
