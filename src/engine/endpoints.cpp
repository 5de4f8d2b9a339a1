// UcxEngine: endpoints. See src/engine/ucx_engine.hpp.
#include "engine/net_place.hpp"
#include "engine/ucx_engine.hpp"

namespace yokan {

void UcxEngine::close_endpoint(Endpoint& ep) {
  std::unique_lock<std::shared_mutex> g(ep.mu);
  if (!ep.ep) return;
  // A flushing close, finished by UCX in the background: a force-close is
  // refused (INVALID_PARAM, leaving the endpoint open) outside UCX's
  // peer-failure mode, which our endpoints cannot use (endpoints.cpp).
  // Operations still under way on it (orphaned calls) end with it or with
  // the worker; no caller waits for them.
  ucp_request_param_t p{};
  ucs_status_ptr_t r = ucp_ep_close_nbx(ep.ep, &p);
  if (r && !UCS_PTR_IS_ERR(r)) ucp_request_free(r);
  ep.ep = nullptr;
}

void UcxEngine::fail_peer(uint64_t token) {
  std::shared_ptr<Endpoint> peer;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = peers_.find(token);
    if (it == peers_.end()) return;
    peer = it->second;
  }
  fail_endpoint(peer.get());
}

void UcxEngine::fail_connection(Endpoint* ep, uint64_t gen, const char* why) {
  if (ep->gen.load() == gen) fail_endpoint(ep, why);
}

void UcxEngine::fail_endpoint(Endpoint* ep, const char* why) {
  ep->failed.store(true);
  std::vector<PendingCall*> failed;
  {
    std::lock_guard<std::mutex> g(pending_mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second->ep == ep) {
        it->second->claimed = true;
        failed.push_back(it->second);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto* pc : failed) {
    pc->reply->status = Status::YOKAN_ERR_FROM_MERCURY;
    pc->reply->error = "connection to " + ep->address + " " + why;
    pc->complete_response();
  }
  close_endpoint(*ep);
  wake_progress();
  // A client endpoint stays in the lookup cache: its handles reconnect it in
  // place on their next call. A server-side one is forgotten (the client
  // says HELLO again when it reconnects).
  std::lock_guard<std::mutex> g(endpoints_mu_);
  auto p = peers_.find(ep->peer_token);
  if (p != peers_.end() && p->second.get() == ep) {
    retired_.push_back(p->second);
    peers_.erase(p);
  }
}

std::shared_ptr<Endpoint> UcxEngine::create_endpoint(const std::string& worker_address,
                                                     const std::string& label) {
  auto ep = std::make_shared<Endpoint>();
  ep->address = label;
  // No UCX peer-failure mode: in UCX 1.13 it excludes the shared-memory
  // transports unless their error handling is enabled, and with the new
  // protocols (PROTO_ENABLE=y) a peer failure during a rendezvous then hits
  // an unimplemented abort (an assertion: the process dies). Peer death is
  // detected through the bootstrap connection; calls with a deadline are
  // let go at it without UCX's help (calls.cpp).
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
  ucs_status_t s = ucp_ep_create(worker_, &ep_params, &ep->ep);
  if (s != UCS_OK)
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY,
                    std::string("cannot connect to ") + label + ": " + ucs_status_string(s));
  return ep;
}

std::string UcxEngine::choose_worker(const PeerCard& theirs, const std::string& who,
                                     std::string* worker, bool* net_only) const {
  // A peer elsewhere (another host, another network namespace) gets and
  // gives network-only worker addresses, so that UCX cannot pick shared
  // memory for it: both ends need a transport for UCX to use it. Both ends
  // decide the same way from the same two places. (A place that /proc could
  // not tell is taken as ours.)
  bool same_place = place_.empty() || theirs.place.empty() || theirs.place == place_;
  if (net_only) *net_only = !same_place;
  if (same_place) {
    *worker = theirs.worker;
    return {};
  }
  if (theirs.worker_net.empty() || worker_net_address_.empty())
    // Shared memory would be all that is left, and it does not cross
    // network namespaces: refuse rather than hang.
    return "cannot reach " + who + ": it is in another network namespace or on another host, and " +
           (worker_net_address_.empty() ? "this engine" : "that engine") +
           " has only shared-memory transports";
  *worker = theirs.worker_net;
  return {};
}

void UcxEngine::connect_endpoint(const std::shared_ptr<Endpoint>& ep, double budget_ms) {
  const std::string& address = ep->address;
  auto start = Clock::now();
  if (ep->liveness_fd >= 0) {
    // The old connection's bootstrap socket: the server sees it close and
    // forgets that connection; the watcher closes its dup and calls back for
    // a connection that is no longer current (gen moved on).
    ep->gen.fetch_add(1);
    shutdown(ep->liveness_fd, SHUT_RDWR);
    close(ep->liveness_fd);
    ep->liveness_fd = -1;
  }
  std::string remote_worker;
  int liveness_fd = -1;
  if (address == address_ && listen_) {
    remote_worker = worker_address_;
    std::string err = admit_peer(token_, own_card_);  // our own, trusted
    if (!err.empty()) throw Exception(Status::YOKAN_ERR_FROM_MERCURY, err);
  } else {
    ParsedAddress where = parse_address(address);
    std::string card_bytes;
    const int connect_ms = static_cast<int>(std::min(budget_ms, 5000.0));
    try {
      std::tie(card_bytes, liveness_fd) =
          bootstrap_connect(where, token_, own_card_, handshake_.secret, connect_ms);
    } catch (const Exception& e) {
      // A peer that accepts but never answers (stopped, wedged) is a timeout.
      double spent = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (e.code() == Status::YOKAN_ERR_FROM_MERCURY && spent >= connect_ms - 1)
        throw Exception(Status::YOKAN_ERR_TIMEOUT, "timed out after " + std::to_string(connect_ms) +
                                                       " ms connecting to " + address);
      throw;
    }
    auto card = decode_card(card_bytes);
    std::string err = card ? choose_worker(*card, address, &remote_worker, nullptr)
                           : "no valid answer from " + address + " (malformed engine card)";
    if (!err.empty()) {
      close(liveness_fd);
      throw Exception(Status::YOKAN_ERR_FROM_MERCURY, err);
    }
    set_liveness_timers(liveness_fd, liveness_ms_);
  }
  std::shared_ptr<Endpoint> fresh;
  try {
    fresh = create_endpoint(remote_worker, address);
  } catch (...) {
    if (liveness_fd >= 0) close(liveness_fd);
    throw;
  }
  uint64_t gen;
  {
    std::unique_lock<std::shared_mutex> g(ep->mu);
    ep->ep = fresh->ep;  // `fresh` only built the UCX endpoint
    fresh->ep = nullptr;
    gen = ep->gen.fetch_add(1) + 1;
  }
  Endpoint* raw = ep.get();
  if (liveness_fd >= 0) {
    ep->liveness_fd = liveness_fd;
    int watched = dup(liveness_fd);
    if (watched >= 0)
      watcher_->add(watched, [this, ep, gen] { fail_connection(ep.get(), gen, "lost"); });
  }
  // HELLO: the server filed us during the handshake; this confirms that the
  // UCX path works both ways.
  std::string meta(8, '\0');
  std::memcpy(meta.data(), &token_, 8);
  Reply reply;
  CallOptions opts;
  double spent = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  opts.timeout_ms = std::max(100.0, budget_ms - spent);
  Status s = send_and_wait(kAmHello, ep, 0, 0, meta, {}, opts, &reply);
  if (!ok(s) || !ok(reply.status)) {
    fail_connection(raw, gen, "failed");
    std::string why =
        !reply.error.empty() ? reply.error : std::string(status_message(ok(s) ? reply.status : s));
    throw Exception(s == Status::YOKAN_ERR_TIMEOUT ? s : Status::YOKAN_ERR_FROM_MERCURY,
                    "no answer from " + address + " (" + why + ")");
  }
  ep->failed.store(false);
}

EndpointPtr UcxEngine::lookup(const std::string& address) {
  if (finalized_) throw Exception(Status::YOKAN_ERR_INVALID_MID, "the engine was finalized");
  std::shared_ptr<Endpoint> ep;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    auto it = lookups_.find(address);
    if (it != lookups_.end()) ep = it->second;
  }
  if (ep) {
    if (!ep->failed) return ep;
    Reply r;
    Status s = reconnect(ep, connect_ms_, &r);
    if (!ok(s)) throw Exception(s, r.error);
    return ep;
  }
  parse_address(address);  // throws on a malformed address
  ep = std::make_shared<Endpoint>();
  ep->address = address;
  ep->failed = true;  // not connected yet
  {
    std::lock_guard<std::timed_mutex> g(ep->connect_mu);
    connect_endpoint(ep, connect_ms_);
  }
  std::lock_guard<std::mutex> g(endpoints_mu_);
  auto [it, inserted] = lookups_.emplace(address, ep);
  if (!inserted) {
    if (it->second->failed) {
      retired_.push_back(it->second);
      it->second = ep;
    } else {
      retired_.push_back(ep);  // another thread won the race; keep theirs
    }
  }
  return it->second;
}

Status UcxEngine::reconnect(const EndpointPtr& ep, double timeout_ms, Reply* reply) {
  if (finalized_) return Status::YOKAN_ERR_INVALID_MID;
  if (!ep->failed) return Status::YOKAN_SUCCESS;
  double budget = timeout_ms > 0 && timeout_ms < connect_ms_ ? timeout_ms : connect_ms_;
  std::unique_lock<std::timed_mutex> g(ep->connect_mu, std::defer_lock);
  if (!g.try_lock_for(std::chrono::duration<double, std::milli>(budget))) {
    reply->error = "connection to " + ep->address + " lost; reconnecting (by another caller) " +
                   "took longer than " + std::to_string(static_cast<long long>(budget)) + " ms";
    return Status::YOKAN_ERR_TIMEOUT;
  }
  if (!ep->failed) return Status::YOKAN_SUCCESS;  // another caller did it
  if (ep->address.empty() || ep->peer_token != 0) {
    reply->error = "connection to " + ep->address + " lost";
    return Status::YOKAN_ERR_FROM_MERCURY;
  }
  try {
    connect_endpoint(ep, budget);
  } catch (const Exception& e) {
    reply->error =
        std::string("connection to ") + ep->address + " lost; reconnecting failed: " + e.what();
    Status c = e.code();
    return c == Status::YOKAN_ERR_INVALID_MID || c == Status::YOKAN_ERR_PERMISSION ||
                   c == Status::YOKAN_ERR_BUSY || c == Status::YOKAN_ERR_TIMEOUT
               ? c
               : Status::YOKAN_ERR_FROM_MERCURY;
  }
  return Status::YOKAN_SUCCESS;
}

std::string UcxEngine::endpoint_info(const EndpointPtr& ep) {
  std::shared_lock<std::shared_mutex> g(ep->mu);
  if (!ep->ep) return "closed";
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (!f) return {};
  ucp_ep_print_info(ep->ep, f);
  fclose(f);
  std::string out(text, size);
  free(text);
  return out;
}

}  // namespace yokan
