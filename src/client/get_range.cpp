// Database::get_range: a byte range of one value, cut by the provider so that
// only the range crosses the wire (src/server/get_range.cpp).
#include "client/encode.hpp"

namespace yokan {

namespace {
// meta [mode][count = 1][key size][offset][length][from_end]; the key as body.
KeyRequest range_request(int32_t m, std::string_view key, uint64_t offset, uint64_t length,
                         bool from_end) {
  // A ranged read never erases (the provider refuses it too): say so before any RPC.
  if (m & mode::CONSUME) throw Exception(Status::YOKAN_ERR_MODE, "get_range does not take CONSUME");
  KeyRequest req(m, Keys{key});
  req.meta.put<uint64_t>(offset);
  req.meta.put<uint64_t>(length);
  req.meta.put<uint8_t>(from_end ? 1 : 0);
  return req;
}

Database::RangeResult range_reply(Reply& r, uint64_t length) {
  Database::RangeResult result;
  result.value_size = decode_sizes(r.meta, 1)[0];
  // More bytes than asked for, or any for an absent key, is a broken reply.
  if (r.body.size() > length || (result.value_size == KEY_NOT_FOUND && r.body.size() != 0) ||
      (result.value_size != KEY_NOT_FOUND && r.body.size() > result.value_size))
    throw Exception(Status::YOKAN_ERR_CORRUPTION, "malformed get_range reply from the provider");
  result.bytes = std::move(r.body);
  return result;
}
}  // namespace

Database::RangeResult Database::get_range(int32_t m, std::string_view key, uint64_t offset,
                                          uint64_t length, bool from_end, double timeout_ms) const {
  KeyRequest req = range_request(m, key, offset, length, from_end);
  Reply r = call(rpc::kGetRange, req.meta.str(), req.body.segments, timeout_ms, m);
  return range_reply(r, length);
}

Started<Database::RangeResult> Database::get_range_start(int32_t m, std::string_view key,
                                                         uint64_t offset, uint64_t length,
                                                         bool from_end, double t,
                                                         const Completion& done) const {
  KeyRequest req = range_request(m, key, offset, length, from_end);
  auto decode = [length](Reply& r) { return range_reply(r, length); };
  return {start(rpc::kGetRange, req.meta.str(), t, m, req.body.segments, done), decode};
}

}  // namespace yokan
