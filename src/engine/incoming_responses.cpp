// UcxEngine: receiving responses (client side). See src/engine/ucx_engine.hpp.
#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {
// Moves a rendezvous reply received into pc->rx (calls with a deadline) to
// where the caller wants it: its scatter destinations (pc->iov) or the body.
void deliver_rx(PendingCall* pc) {
  Reply* reply = pc->reply;
  if (reply->scattered) {
    const char* src = pc->rx.data();
    for (auto& d : pc->iov) {
      copy_bytes(d.buffer, src, d.length);
      src += d.length;
    }
  } else {
    reply->body = std::move(pc->rx);
  }
}

void response_recv_done(void* request, ucs_status_t status, size_t length, void* user_data) {
  auto* pc = static_cast<PendingCall*>(user_data);
  ucp_request_free(request);
  // Under the call's mutex throughout: a caller past its deadline may let
  // the call go (orphan) at any moment, and then its Reply is no more.
  std::unique_lock<std::mutex> lk(pc->m);
  if (pc->release_if_orphaned(lk)) return;
  pc->rx_pending = false;
  if (status != UCS_OK) {
    pc->reply->status = Status::YOKAN_ERR_FROM_MERCURY;
    pc->reply->error = std::string("receiving the reply failed: ") + ucs_status_string(status);
  } else if (pc->owner && pc->owner->owns_buffers) {
    deliver_rx(pc);
  }
  if (pc->meta_in_body && status == UCS_OK) {
    size_t n = pc->meta_storage.size();
    pc->reply->meta.assign(pc->reply->body.data(), n);
    Buffer rest(pc->reply->body.data() + n, pc->reply->body.size() - n);
    pc->reply->body = std::move(rest);
  }
  pc->response_done.store(true, std::memory_order_release);
  pc->cv.notify_all();
  if (pc->completions) pc->completions->post(pc->cookie);
}
}  // namespace

ucs_status_t UcxEngine::on_response(void* arg, const void* header, size_t header_len, void* data,
                                    size_t len, const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxEngine*>(arg);
  WireHeader h;
  std::string_view meta, prefix;
  if (!parse_header(header, header_len, &h, &meta, &prefix) || !prefix.empty()) return UCS_OK;
  PendingCall* pc = nullptr;
  {
    std::lock_guard<std::mutex> g(self->pending_mu_);
    auto it = self->pending_.find(h.seq);
    if (it == self->pending_.end()) return UCS_OK;  // the caller gave up
    pc = it->second;
    self->pending_.erase(it);
    pc->claimed = true;
  }
  Reply* reply = pc->reply;
  reply->status = static_cast<Status>(h.status);
  bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
  bool meta_in_body = h.flags & kFlagMetaInBody;
  if (meta_in_body && len < h.meta_len) {
    reply->status = Status::YOKAN_ERR_FROM_MERCURY;
    reply->error = "malformed reply (shorter than its meta)";
    pc->complete_response();
    return UCS_OK;
  }
  if (!meta_in_body) reply->meta.assign(meta.data(), meta.size());

  std::vector<Destination> dst;
  bool scatter = !meta_in_body && pc->scatter && (*pc->scatter)(reply->meta, len, dst);
  if (!rndv) {
    const char* src = static_cast<const char*>(data);
    if (meta_in_body) {
      reply->meta.assign(src, h.meta_len);
      reply->body = Buffer(src + h.meta_len, len - h.meta_len);
    } else if (scatter) {
      for (auto& d : dst) {
        copy_bytes(d.data, src, d.size);
        src += d.size;
      }
      reply->scattered = true;
    } else {
      reply->body = Buffer(data, len);
    }
    pc->complete_response();
    return UCS_OK;
  }
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.recv_am = response_recv_done;
  p.user_data = pc;
  ucs_status_ptr_t r;
  // A call with a deadline receives into a buffer of its own, which can
  // outlive the caller if the receive does (see PendingCall::owner).
  const bool own_rx = pc->owner && pc->owner->owns_buffers;
  if (own_rx) {
    pc->meta_in_body = meta_in_body;
    pc->meta_storage.resize(meta_in_body ? h.meta_len : 0);
    if (scatter) {
      reply->scattered = true;
      pc->iov.clear();
      for (auto& d : dst)
        if (d.size) pc->iov.push_back({d.data, d.size});
    }
    pc->rx = Buffer(len);
    p.datatype = ucp_dt_make_contig(1);
    r = ucp_am_recv_data_nbx(self->worker_, data, pc->rx.data(), len, &p);
    if (r == nullptr) deliver_rx(pc);
  } else if (scatter) {
    reply->scattered = true;
    pc->iov.clear();
    for (auto& d : dst)
      if (d.size) pc->iov.push_back({d.data, d.size});
    if (pc->iov.size() == 1) {  // contiguous: lets UCX use its zero-copy protocols
      p.datatype = ucp_dt_make_contig(1);
      r = ucp_am_recv_data_nbx(self->worker_, data, pc->iov[0].buffer, pc->iov[0].length, &p);
    } else {
      p.datatype = ucp_dt_make_iov();
      r = ucp_am_recv_data_nbx(self->worker_, data, pc->iov.data(), pc->iov.size(), &p);
    }
  } else {
    pc->meta_in_body = meta_in_body;
    pc->meta_storage.resize(meta_in_body ? h.meta_len : 0);
    reply->body = Buffer(len);
    p.datatype = ucp_dt_make_contig(1);
    r = ucp_am_recv_data_nbx(self->worker_, data, reply->body.data(), len, &p);
  }
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
    std::lock_guard<std::mutex> g(pc->m);
    pc->rx_pending = true;  // from now on the caller may let the call go
  } else if (r == nullptr) {
    if (pc->meta_in_body) {
      size_t n = h.meta_len;
      reply->meta.assign(reply->body.data(), n);
      reply->body = Buffer(reply->body.data() + n, reply->body.size() - n);
    }
    pc->complete_response();
  } else if (UCS_PTR_IS_ERR(r)) {
    reply->status = Status::YOKAN_ERR_FROM_MERCURY;
    reply->error =
        std::string("receiving the reply failed: ") + ucs_status_string(UCS_PTR_STATUS(r));
    pc->complete_response();
  }
  return UCS_OK;
}

}  // namespace yokan
