#include <mutex>

#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][key sizes]; body: keys. Erasing an absent key is not an error.
void ProviderImpl::handle_erase(RequestPtr req) {
  KeyBatch batch;
  Status s = decode_keys_only(*req, &batch);
  if (!ok(s)) return req->respond(s);
  if (park_if_missing(req, batch)) return;
  {
    std::shared_lock<std::shared_mutex> g(write_order);
    for (auto key : batch.keys) {
      s = backend->erase(key);
      if (!ok(s)) break;
    }
  }
  req->respond(s, why(s));
}

}  // namespace yokan
