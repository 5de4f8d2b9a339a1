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
    // One batch: all erased or (on backends with atomic batches) none.
    std::shared_lock<std::shared_mutex> g(write_order);
    s = batch.keys.size() == 1 ? backend->erase(batch.keys[0]) : backend->erase_batch(batch.keys);
  }
  req->respond(s, why(s));
}

}  // namespace yokan
