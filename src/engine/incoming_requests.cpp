// UcxEngine: receiving requests (server side). See src/engine/ucx_engine.hpp.
#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {
struct RecvCtx {
  UcxEngine* engine;
  std::unique_ptr<IncomingRequest> req;
};

void request_recv_done(void* request, ucs_status_t status, size_t length, void* user_data) {
  std::unique_ptr<RecvCtx> ctx(static_cast<RecvCtx*>(user_data));
  ucp_request_free(request);
  ctx->engine->end_op();
  if (status != UCS_OK) {
    ctx->req->respond(Status::YOKAN_ERR_FROM_MERCURY);
    return;
  }
  ctx->engine->dispatch(std::move(ctx->req));
}
}  // namespace

ucs_status_t UcxEngine::on_hello(void* arg, const void* header, size_t header_len, void* data,
                                 size_t len, const ucp_am_recv_param_t* param) {
  return static_cast<UcxEngine*>(arg)->handle_incoming(header, header_len, data, len, param, true);
}

ucs_status_t UcxEngine::on_request(void* arg, const void* header, size_t header_len, void* data,
                                   size_t len, const ucp_am_recv_param_t* param) {
  return static_cast<UcxEngine*>(arg)->handle_incoming(header, header_len, data, len, param, false);
}

ucs_status_t UcxEngine::handle_incoming(const void* header, size_t header_len, void* data,
                                        size_t len, const ucp_am_recv_param_t* param, bool hello) {
  WireHeader h;
  std::string_view meta, prefix;
  bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
  if (!parse_header(header, header_len, &h, &meta, &prefix)) {
    std::fprintf(stderr, "[mochi-yokan] dropped a malformed message (%zu header bytes)\n",
                 header_len);
    return UCS_OK;
  }
  if (hello) {
    if (rndv || (h.flags & kFlagMetaInBody)) return UCS_OK;
    std::string m(meta);
    pool_->post([this, h, m] { handle_hello(h, m); });
    return UCS_OK;
  }
  std::shared_ptr<Endpoint> peer;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = peers_.find(h.token);
    if (it != peers_.end()) peer = it->second;
  }
  if (!peer) {
    std::fprintf(stderr, "[mochi-yokan] dropped a request from an unknown peer\n");
    return UCS_OK;
  }
  auto req = std::make_unique<IncomingRequest>(this, h, peer);
  if (h.flags & kFlagMetaInBody) {
    if (len < h.meta_len) {
      req->respond(Status::YOKAN_ERR_INVALID_ARGS);
      return UCS_OK;
    }
    req->meta_in_body_ = true;
  } else {
    req->meta_.assign(meta.data(), meta.size());
  }
  if (len > max_message_size_) {
    // Eager (NO_RDMA) bodies too: the limit is the provider's, whatever the path.
    req->respond(Status::YOKAN_ERR_INVALID_ARGS);
    return UCS_OK;
  }
  if (!rndv && prefix.empty() && len >= kHoldFrom &&
      (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_DATA)) {
    // The body is read in place: no copy, no buffer of our own.
    std::shared_ptr<const void> held(
        data, [this](const void* d) { release_later(const_cast<void*>(d)); });
    req->body_ = Buffer::borrow(std::move(held), static_cast<const char*>(data), len);
    dispatch(std::move(req));
    return UCS_INPROGRESS;
  }
  if (!rndv) {
    req->body_.reserve(prefix.size() + len);
    req->body_.append(prefix.data(), prefix.size());
    req->body_.append(data, len);
    dispatch(std::move(req));
    return UCS_OK;
  }
  req->body_ = Buffer(prefix.size() + len);
  if (!prefix.empty()) std::memcpy(req->body_.data(), prefix.data(), prefix.size());
  char* dst = req->body_.data() + prefix.size();
  auto* ctx = new RecvCtx{this, std::move(req)};
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.recv_am = request_recv_done;
  p.user_data = ctx;
  p.datatype = ucp_dt_make_contig(1);
  ucs_status_ptr_t r = ucp_am_recv_data_nbx(worker_, data, dst, len, &p);
  if (r == nullptr) {
    std::unique_ptr<RecvCtx> owned(ctx);
    dispatch(std::move(owned->req));
  } else if (UCS_PTR_IS_ERR(r)) {
    std::unique_ptr<RecvCtx> owned(ctx);
    owned->req->respond(Status::YOKAN_ERR_FROM_MERCURY);
  } else {
    begin_op();
  }
  return UCS_OK;
}

void UcxEngine::handle_hello(const WireHeader& h, std::string_view meta) {
  // meta = [client token u64][client worker address]
  if (meta.size() <= 8) return;
  std::string address(meta.substr(8));
  std::shared_ptr<Endpoint> peer;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = peers_.find(h.token);
    if (it != peers_.end() && !it->second->failed) peer = it->second;
  }
  if (!peer) {
    try {
      peer = create_endpoint(address, "client");
    } catch (const Exception&) {
      return;
    }
    peer->peer_token = h.token;
    std::lock_guard<std::mutex> g(endpoints_mu_);
    peers_[h.token] = peer;
  }
  WireHeader r{};
  r.seq = h.seq;
  r.status = static_cast<int32_t>(Status::YOKAN_SUCCESS);
  send_message(*peer, kAmResponse, r, {}, {});
}

void UcxEngine::dispatch(std::unique_ptr<IncomingRequest> req) {
  Handler handler;
  bool run_inline = false;
  {
    std::shared_lock<std::shared_mutex> g(handlers_mu_);
    auto it = handlers_.find((uint32_t(req->provider_id()) << 16) | req->rpc());
    if (it != handlers_.end()) {
      handler = it->second.handler;
      run_inline = it->second.run_inline;
    }
  }
  if (!handler) {
    bool provider_known = provider_registered(req->provider_id());
    req->respond(provider_known ? Status::YOKAN_ERR_OP_UNSUPPORTED
                                : Status::YOKAN_ERR_INVALID_PROVIDER);
    return;
  }
  if (run_inline) return handler(std::move(req));
  auto* raw = req.release();
  pool_->post([handler = std::move(handler), raw] { handler(RequestPtr(raw)); });
}

}  // namespace yokan
