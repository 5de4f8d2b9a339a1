#include <mutex>

#include "server/provider_impl.hpp"

namespace yokan {

// meta [mode][prefix]: erases every key that starts with prefix ("" = all).
// Works on every key/value backend (unordered ones are scanned whole).
void ProviderImpl::handle_erase_range(RequestPtr req) {
  WireReader in(req->meta());
  const int32_t m = in.get<int32_t>();
  const std::string_view prefix = in.bytes();
  if (!in.done()) return req->respond(Status::YOKAN_ERR_INVALID_ARGS);
  if (m & ~kSupportedModes) return req->respond(Status::YOKAN_ERR_MODE);
  std::vector<std::string> doomed;
  Status s;
  {
    // Exclusive: no key with the prefix may appear between the scan and the erase.
    std::unique_lock<std::shared_mutex> g(write_order);
    // Only in bytewise order are the keys with a prefix one contiguous range.
    const bool sorted = backend->traits().sorted && backend->traits().bytewise;
    s = backend->iterate(sorted ? prefix : std::string_view(), true, false,
                         [&](std::string_view k, std::string_view) {
                           bool match = k.substr(0, prefix.size()) == prefix;
                           if (match) doomed.emplace_back(k);
                           return match || !sorted || k < prefix;
                         });
    for (size_t i = 0; ok(s) && i < doomed.size(); ++i) s = backend->erase(doomed[i]);
  }
  req->respond(s, why(s));
}

}  // namespace yokan
