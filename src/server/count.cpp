#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode] -> meta [count u64]
void ProviderImpl::handle_count(RequestPtr req) {
  WireReader in(req->meta());
  int32_t m = in.get<int32_t>();
  if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
  if (m & ~kSupportedModes) return req->respond(Status::YOKAN_ERR_MODE);
  const std::shared_ptr<Backend> backend = pin();  // survives a restore meanwhile
  uint64_t n = 0;
  Status s = backend->count(&n);
  WireWriter out;
  out.put<uint64_t>(n);
  req->respond(s, ok(s) ? out.str() : why(s));
}

}  // namespace yokan
