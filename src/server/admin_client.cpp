// The client side of the provider's admin RPCs (remote snapshot).
#include "common/rpc.hpp"
#include "yokan/provider.hpp"

namespace yokan {

void remote_snapshot(Engine& engine, const std::string& address, uint16_t provider_id,
                     const std::string& dest_path, double timeout_ms) {
  if (dest_path.empty()) throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "empty snapshot path");
  EndpointPtr ep = engine.lookup(address);
  CallOptions options;
  options.timeout_ms = timeout_ms;
  Reply reply;
  Status s = engine.call(ep, provider_id, rpc::kSnapshot, dest_path, {}, options, &reply);
  if (!ok(s))
    throw Exception(s, reply.error.empty() ? std::string(status_message(s))
                                           : std::string(status_message(s)) + ": " + reply.error);
  if (!ok(reply.status))
    throw Exception(reply.status,
                    reply.meta.empty() ? std::string(status_message(reply.status)) : reply.meta);
}

}  // namespace yokan
