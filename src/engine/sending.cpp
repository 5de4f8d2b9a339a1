// UcxEngine: sending. See src/engine/ucx_engine.hpp.
#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {

// A message to send: header + meta kept alive with the body until UCX is done.
struct Outgoing {
  UcxEngine* engine;
  std::string head;  // WireHeader + meta (when it fits)
  std::string big_meta;
  Buffer body;
  ucp_dt_iov_t iov[2];
  size_t iov_count = 0;
};

}  // namespace

namespace {
void send_done_cb(void* request, ucs_status_t status, void* user_data) {
  auto* out = static_cast<Outgoing*>(user_data);
  out->engine->end_op();
  delete out;
  ucp_request_free(request);
}
}  // namespace

void UcxEngine::send_message(Endpoint& ep, uint16_t am_id, WireHeader h, std::string meta,
                             Buffer body) {
  auto* out = new Outgoing;
  out->engine = this;
  h.magic = kWireMagic;
  h.meta_len = static_cast<uint32_t>(meta.size());
  if (meta.size() > kMaxHeaderMeta) {
    h.flags |= kFlagMetaInBody;
    out->big_meta = std::move(meta);
    out->iov[out->iov_count++] = {out->big_meta.data(), out->big_meta.size()};
  }
  out->head.assign(reinterpret_cast<const char*>(&h), sizeof h);
  if (!(h.flags & kFlagMetaInBody)) out->head += meta;
  out->body = std::move(body);
  if (out->body.size()) out->iov[out->iov_count++] = {out->body.data(), out->body.size()};

  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.send = send_done_cb;
  p.user_data = out;
  const void* buffer = out->iov;
  size_t count = out->iov_count;
  p.datatype = ucp_dt_make_iov();
  if (out->iov_count == 1) {
    p.datatype = ucp_dt_make_contig(1);
    buffer = out->iov[0].buffer;
    count = out->iov[0].length;
  }
  std::shared_lock<std::shared_mutex> g(ep.mu);
  if (!ep.ep) {
    delete out;
    return;
  }
  ucs_status_ptr_t r =
      ucp_am_send_nbx(ep.ep, am_id, out->head.data(), out->head.size(), buffer, count, &p);
  if (r == nullptr || UCS_PTR_IS_ERR(r)) {
    delete out;
    return;
  }
  begin_op();
}

void IncomingRequest::respond(Status status, std::string meta, Buffer body) {
  if (responded_) return;
  responded_ = true;
  if (!peer_ || peer_->failed.load()) return;
  WireHeader h{};
  h.rpc = header_.rpc;
  h.provider = header_.provider;
  h.seq = header_.seq;
  h.status = static_cast<int32_t>(status);
  engine_->send_message(*peer_, kAmResponse, h, std::move(meta), std::move(body));
}

}  // namespace yokan
