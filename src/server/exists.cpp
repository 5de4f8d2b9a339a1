#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][key sizes]; body: keys. Reply meta: one byte (0/1) per key.
void ProviderImpl::handle_exists(RequestPtr req) {
  KeyBatch batch;
  Status s = decode_keys_only(*req, &batch);
  if (!ok(s)) return req->respond(s);
  if (park_if_missing(req, batch)) return;
  const std::shared_ptr<Backend> backend = pin();  // survives a restore meanwhile
  std::string flags(batch.keys.size(), '\0');
  for (size_t i = 0; i < batch.keys.size(); ++i) {
    bool found = false;
    s = backend->exists(batch.keys[i], &found);
    if (!ok(s)) return req->respond(s, why(s));
    flags[i] = found ? 1 : 0;
  }
  req->respond(Status::YOKAN_SUCCESS, std::move(flags));
}

}  // namespace yokan
