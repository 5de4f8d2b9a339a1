#include "raw_peer.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>

#include "engine/bootstrap.hpp"
#include "engine/net_place.hpp"
#include "engine/wire_format.hpp"
#include "yokan/common.hpp"

namespace yokan::fuzz {

namespace {

using Clock = std::chrono::steady_clock;

void check(ucs_status_t s, const char* what) {
  if (s != UCS_OK) throw std::runtime_error(std::string(what) + ": " + ucs_status_string(s));
}

// Progresses `worker` until `request` completes or the deadline passes;
// cancels it then. True if it completed successfully.
bool wait_request(ucp_worker_h worker, ucs_status_ptr_t request, Clock::time_point deadline) {
  if (request == nullptr) return true;
  if (UCS_PTR_IS_ERR(request)) return false;
  ucs_status_t s;
  while ((s = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    ucp_worker_progress(worker);
    if (Clock::now() > deadline) {
      ucp_request_cancel(worker, request);
      while (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_worker_progress(worker);
      ucp_request_free(request);
      return false;
    }
  }
  ucp_request_free(request);
  return s == UCS_OK;
}

}  // namespace

RawPeer::RawPeer() {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
  // The same transports and device as a "tcp" engine on loopback: shared
  // memory to a same-host server, TCP on lo otherwise.
  ucp_config_modify(config, "TLS", "tcp,sm,self");
  ucp_config_modify(config, "NET_DEVICES", "lo");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM;
  ucs_status_t s = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  check(s, "ucp_init");
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  check(ucp_worker_create(context_, &wp, &worker_), "ucp_worker_create");

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS | UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  check(ucp_worker_query(worker_, &attr), "ucp_worker_query");
  worker_address_.assign(reinterpret_cast<const char*>(attr.address), attr.address_length);
  ucp_worker_release_address(worker_, attr.address);
  max_header_ = attr.max_am_header;

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = kAmResponse;
  hp.cb = &RawPeer::on_response;
  hp.arg = this;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  check(ucp_worker_set_am_recv_handler(worker_, &hp), "ucp_worker_set_am_recv_handler");
}

RawPeer::~RawPeer() {
  disconnect();
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
}

ucs_status_t RawPeer::on_response(void* arg, const void* header, size_t header_len, void*, size_t,
                                  const ucp_am_recv_param_t*) {
  // A rendezvous body is dropped by returning UCS_OK, as the engine does.
  auto* self = static_cast<RawPeer*>(arg);
  ++self->responses_;
  if (header_len >= sizeof(WireHeader)) {
    WireHeader h;
    std::memcpy(&h, header, sizeof h);
    self->awaited_.erase(h.seq);
    const size_t slot = std::min<size_t>(h.rpc, kRpcSlots - 1);
    self->answered_[slot]++;
    if (h.status == 0) self->succeeded_[slot]++;
  }
  return UCS_OK;
}

bool RawPeer::connect(const std::string& server_address, std::string* error) {
  disconnect();
  token_ = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  try {
    // Our card has no network place: the server takes us as its neighbour.
    auto [card_bytes, fd] = bootstrap_connect(parse_address(server_address), token_,
                                              encode_card({worker_address_, "", ""}), "", 5000);
    bootstrap_fd_ = fd;
    auto card = decode_card(card_bytes);
    if (!card) throw std::runtime_error("malformed engine card from " + server_address);
    const std::string& remote = card->worker;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.address = reinterpret_cast<const ucp_address_t*>(remote.data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    check(ucp_ep_create(worker_, &ep, &ep_), "ucp_ep_create");
  } catch (const std::exception& e) {
    *error = e.what();
    disconnect();
    return false;
  }
  WireHeader h{};
  h.magic = kWireMagic;
  h.seq = uint64_t(1) << 62;
  h.token = token_;
  std::string meta(8, '\0');
  std::memcpy(meta.data(), &token_, 8);
  meta += worker_address_;
  h.meta_len = static_cast<uint32_t>(meta.size());
  std::string header(reinterpret_cast<const char*>(&h), sizeof h);
  if (!round_trip(kAmHello, header + meta, 10000)) {
    *error = "the server did not answer HELLO";
    disconnect();
    return false;
  }
  return true;
}

void RawPeer::disconnect() {
  if (ep_) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    wait_request(worker_, ucp_ep_close_nbx(ep_, &p), Clock::now() + std::chrono::seconds(5));
    ep_ = nullptr;
  }
  if (bootstrap_fd_ >= 0) close(bootstrap_fd_);
  bootstrap_fd_ = -1;
  awaited_.clear();
}

bool RawPeer::send(uint16_t am_id, const std::string& header, const std::string& data,
                   uint32_t send_flags, int timeout_ms) {
  if (!ep_) return false;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = send_flags;
  ucs_status_ptr_t r =
      ucp_am_send_nbx(ep_, am_id, header.data(), header.size(), data.data(), data.size(), &p);
  return wait_request(worker_, r, Clock::now() + std::chrono::milliseconds(timeout_ms));
}

bool RawPeer::round_trip(uint16_t am_id, const std::string& header, int timeout_ms) {
  WireHeader h;
  std::memcpy(&h, header.data(), sizeof h);
  awaited_.insert(h.seq);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (!send(am_id, header, {}, 0, timeout_ms)) {
    awaited_.erase(h.seq);
    return false;
  }
  while (awaited_.count(h.seq)) {
    ucp_worker_progress(worker_);
    if (Clock::now() > deadline) {
      awaited_.erase(h.seq);
      return false;
    }
  }
  return true;
}

void RawPeer::progress() { ucp_worker_progress(worker_); }

}  // namespace yokan::fuzz
