// UcxEngine: receiving requests (server side). See src/engine/ucx_engine.hpp.
#include "engine/net_place.hpp"
#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {
// Bounds of a UCX worker address we accept from a peer: ours are a few
// hundred bytes; anything outside this is not one.
constexpr size_t kMinWorkerAddress = 16;
constexpr size_t kMaxWorkerAddress = 8192;

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
    drop_log_.log("dropped a malformed message (%zu header bytes)", header_len);
    return UCS_OK;
  }
  if (hello) {
    // Only a client that completed the bootstrap handshake has a peer entry
    // (admit_peer); nothing in a HELLO is handed to UCX.
    bool known;
    {
      std::lock_guard<std::mutex> g(endpoints_mu_);
      known = peers_.count(h.token) != 0;
    }
    if (!known || rndv) {
      drop_log_.log("dropped a HELLO from a peer that did not complete the handshake");
      return UCS_OK;
    }
    pool_->post([this, h] { handle_hello(h); });
    return UCS_OK;
  }
  std::shared_ptr<Endpoint> peer;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = peers_.find(h.token);
    if (it != peers_.end()) peer = it->second;
  }
  if (!peer) {
    // Authentication is per connection: a token that did not pass the
    // handshake has no peer entry, so its requests never reach a provider.
    drop_log_.log("dropped a request from an unknown peer");
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

std::string UcxEngine::admit_peer(uint64_t token, const std::string& card_bytes) {
  auto card = decode_card(card_bytes);
  if (!card) {
    drop_log_.log("refused a client with a malformed engine card (%zu bytes)", card_bytes.size());
    return "malformed engine card";
  }
  std::string worker_address;
  bool net_only = false;
  std::string err = choose_worker(*card, "the client", &worker_address, &net_only);
  if (!err.empty()) {
    drop_log_.log("refused a client: %s", err.c_str());
    return err;
  }
  // The address is still untrusted input, even from a peer that proved the
  // token: UCX unpacks it without a length and asserts (aborting the process)
  // on an unknown format version. So: sane bounds, and the same header byte
  // (format version nibble and flags) as the matching address of our own
  // worker, made by the same UCX build (docs/design/bootstrap-and-auth.md).
  const std::string& ours = net_only ? worker_net_address_ : worker_address_;
  if (worker_address.size() < kMinWorkerAddress || worker_address.size() > kMaxWorkerAddress ||
      ours.empty() || worker_address[0] != ours[0]) {
    drop_log_.log("refused a client with a malformed worker address (%zu bytes)",
                  worker_address.size());
    return "malformed worker address";
  }
  auto peer = std::make_shared<Endpoint>();
  peer->address = "client";
  // A truncated address would make UCX read past its end: keep a zeroed tail.
  peer->worker_address = worker_address;
  peer->worker_address.append(256, '\0');
  peer->peer_token = token;
  std::lock_guard<std::mutex> g(endpoints_mu_);
  auto it = peers_.find(token);
  if (it != peers_.end()) {
    it->second->failed.store(true);
    retired_.push_back(it->second);
  }
  peers_[token] = peer;
  return {};
}

void UcxEngine::handle_hello(const WireHeader& h) {
  std::shared_ptr<Endpoint> peer;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = peers_.find(h.token);
    if (it != peers_.end() && !it->second->failed) peer = it->second;
  }
  if (!peer) return;
  {
    std::unique_lock<std::shared_mutex> g(peer->mu);
    if (!peer->ep && !peer->worker_address.empty()) {
      try {
        std::shared_ptr<Endpoint> made = create_endpoint(peer->worker_address, "client");
        peer->ep = made->ep;
        made->ep = nullptr;
      } catch (const Exception& e) {
        drop_log_.log("cannot answer a client: %s", e.what());
        peer->worker_address.clear();  // never retried: the client reconnects
        return;
      }
      peer->worker_address.clear();
    }
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
