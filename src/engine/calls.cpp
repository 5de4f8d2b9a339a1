// UcxEngine: calls. See src/engine/ucx_engine.hpp.
#include <optional>

#include "engine/ucx_engine.hpp"

namespace yokan {

namespace {
void call_send_done(void* request, ucs_status_t status, void* user_data) {
  auto* pc = static_cast<PendingCall*>(user_data);
  std::unique_lock<std::mutex> lk(pc->m);
  if (pc->release_if_orphaned(lk)) return;  // the caller freed the request
  pc->send_status = status == UCS_OK ? Status::YOKAN_SUCCESS : Status::YOKAN_ERR_FROM_MERCURY;
  pc->send_done.store(true, std::memory_order_release);
  pc->cv.notify_all();
}

bool limited_timeout(double timeout_ms) { return timeout_ms > 0 && timeout_ms < kNoDeadlineMs; }
}  // namespace

Status UcxEngine::send_and_wait(uint16_t am_id, const EndpointPtr& ep, uint16_t provider_id,
                                uint16_t rpc, std::string_view meta,
                                const std::vector<Segment>& body, const CallOptions& options,
                                Reply* reply) {
  bool orphaned = false;
  if (!limited_timeout(options.timeout_ms)) {
    CallState cs;  // no deadline: waits for everything, so the stack will do
    Status s = start_call(cs, am_id, ep, provider_id, rpc, meta, body, options, reply);
    return ok(s) ? await_call(cs, &orphaned) : s;
  }
  // A deadline: the state may have to outlive this call (see PendingCall).
  auto cs = std::make_unique<CallState>();
  cs->pc.owner = cs.get();
  cs->t0 = Clock::now();
  Status s = start_call(*cs, am_id, ep, provider_id, rpc, meta, body, options, reply);
  if (ok(s)) s = await_call(*cs, &orphaned);
  if (orphaned) (void)cs.release();  // now owned by its UCX callbacks
  return s;
}

Status UcxEngine::reconnect_and_call(const EndpointPtr& ep, uint16_t provider_id, uint16_t rpc,
                                     std::string_view meta, const std::vector<Segment>& body,
                                     const CallOptions& options, Reply* reply) {
  auto start = Clock::now();
  Status s = reconnect(ep, options.timeout_ms, reply);
  if (!ok(s)) return s;
  if (!limited_timeout(options.timeout_ms))
    return send_and_wait(kAmRequest, ep, provider_id, rpc, meta, body, options, reply);
  CallOptions rest = options;
  rest.timeout_ms -= std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (rest.timeout_ms <= 0) {
    reply->error = "timed out after " + std::to_string(static_cast<long long>(options.timeout_ms)) +
                   " ms reconnecting to " + ep->address;
    return Status::YOKAN_ERR_TIMEOUT;
  }
  return send_and_wait(kAmRequest, ep, provider_id, rpc, meta, body, rest, reply);
}

Status UcxEngine::start_call(CallState& cs, uint16_t am_id, const EndpointPtr& ep,
                             uint16_t provider_id, uint16_t rpc, std::string_view meta,
                             const std::vector<Segment>& body, const CallOptions& options,
                             Reply* reply) {
  if (finalized_) return Status::YOKAN_ERR_INVALID_MID;
  // A HELLO goes out on a connection being (re)made, still marked failed.
  if (!ep || (ep->failed.load(std::memory_order_relaxed) && am_id != kAmHello)) {
    if (ep) reply->error = "connection to " + ep->address + " lost";
    return Status::YOKAN_ERR_FROM_MERCURY;
  }
  PendingCall& pc = cs.pc;
  pc.reply = reply;
  pc.scatter = options.scatter;
  pc.ep = ep.get();
  cs.gen = ep->gen.load(std::memory_order_relaxed);
  // Infinite, NaN or huge: no deadline (and no double -> int overflow below).
  const bool limited = limited_timeout(options.timeout_ms);
  cs.timeout_ms = limited ? options.timeout_ms : 0;
  // (A nonblocking call owns its buffers too: it may be given up at any
  // moment, and must then leave at once.)
  cs.owns_buffers = (limited || cs.nonblocking) && pc.owner == &cs;

  WireHeader h{};
  h.magic = kWireMagic;
  h.rpc = rpc;
  h.provider = provider_id;
  h.seq = next_seq_.fetch_add(1);
  h.token = token_;
  h.meta_len = static_cast<uint32_t>(meta.size());
  // The wire field is 32 bits: a budget beyond it is "none" for the handler.
  h.timeout_ms = limited && cs.timeout_ms < 4294967295.0 ? static_cast<uint32_t>(cs.timeout_ms) : 0;
  cs.seq = h.seq;
  std::string& head = cs.head;
  std::vector<ucp_dt_iov_t>& iov = cs.iov;
  iov.reserve(body.size() + 1);
  if (meta.size() > kMaxHeaderMeta) {
    h.flags |= kFlagMetaInBody;
    iov.push_back({const_cast<char*>(meta.data()), meta.size()});
  }
  // Shape the body: pieces that sit back to back in memory (a packed batch)
  // become one; small leading pieces + one large last piece -> the pieces
  // ride in the header and the large one goes contiguous; a small body, or
  // one made of many small pieces -> one staging copy; otherwise a scatter list.
  std::vector<Segment> segs;
  segs.reserve(body.size());
  size_t total = 0;
  for (const auto& seg : body) {
    total += seg.size;
    append_segment(segs, seg);
  }
  std::string prefix;
  std::unique_ptr<char[]>& staging = cs.staging;
  if (!cs.owns_buffers && !(h.flags & kFlagMetaInBody) && segs.size() >= 2 &&
      total - segs.back().size <= kMaxBodyPrefix && segs.back().size > kCoalesceMax) {
    for (size_t i = 0; i + 1 < segs.size(); ++i)
      prefix.append(static_cast<const char*>(segs[i].data), segs[i].size);
    segs.erase(segs.begin(), segs.end() - 1);
    h.flags |= kFlagBodyPrefix;
    h.reserved = static_cast<uint16_t>(prefix.size());
  } else if ((iov.size() + segs.size() > 1 &&
              (total + (iov.empty() ? 0 : meta.size()) <= kCoalesceMax ||
               total / segs.size() < kCoalescePiece)) ||
             (cs.owns_buffers && iov.size() + segs.size() > 0)) {
    // (A call with a deadline also copies a body it could send in place:
    // it may be let go at its deadline while UCX still reads the body.)
    // Plain copies into an uninitialised block: a string append per piece
    // was ~7% of a put_multi of 1000 pairs (profile of the client).
    const size_t staged = total + (iov.empty() ? 0 : meta.size());
    staging.reset(new char[staged]);
    char* at = staging.get();
    for (auto& v : iov) {
      copy_bytes(at, v.buffer, v.length);
      at += v.length;
    }
    for (auto& seg : segs) {
      copy_bytes(at, seg.data, seg.size);
      at += seg.size;
    }
    iov.clear();
    segs.assign(1, Segment{staging.get(), staged});
  }
  head.assign(reinterpret_cast<const char*>(&h), sizeof h);
  if (!(h.flags & kFlagMetaInBody)) head.append(meta.data(), meta.size());
  head += prefix;
  for (const auto& seg : segs) iov.push_back({const_cast<void*>(seg.data), seg.size});

  {
    std::lock_guard<std::mutex> g(pending_mu_);
    pending_[h.seq] = &pc;
  }
  begin_op();  // ended by await_call or abandon_call, or below on a failed send
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                   UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = call_send_done;
  p.user_data = &pc;
  p.flags = options.no_rdma ? UCP_AM_SEND_FLAG_EAGER : 0;
  const void* buffer = iov.data();
  size_t count = iov.size();
  p.datatype = ucp_dt_make_iov();
  if (iov.size() == 1) {
    p.datatype = ucp_dt_make_contig(1);
    buffer = iov[0].buffer;
    count = iov[0].length;
  }
  ucs_status_ptr_t& req = cs.req;
  {
    std::shared_lock<std::shared_mutex> g(ep->mu);
    req = ep->ep ? ucp_am_send_nbx(ep->ep, am_id, head.data(), head.size(), buffer, count, &p)
                 : UCS_STATUS_PTR(UCS_ERR_CANCELED);
  }
  if (req == nullptr) {
    pc.send_done = true;
  } else if (UCS_PTR_IS_ERR(req)) {
    ucs_status_t why = UCS_PTR_STATUS(req);
    req = nullptr;
    {
      std::lock_guard<std::mutex> g(pending_mu_);
      pending_.erase(h.seq);
    }
    end_op();
    reply->error = "cannot send to " + ep->address + ": " + ucs_status_string(why);
    return Status::YOKAN_ERR_FROM_MERCURY;
  } else {
    wake_progress();
  }
  cs.in_flight = true;
  return Status::YOKAN_SUCCESS;
}

Status UcxEngine::await_call(CallState& cs, bool* orphaned) {
  PendingCall& pc = cs.pc;
  // Read now: once the call is orphaned, `cs` may be gone at any moment.
  ucs_status_ptr_t req = cs.req;
  Reply* reply = pc.reply;
  const Endpoint* ep = pc.ep;
  const double timeout_ms = cs.timeout_ms;
  cs.in_flight = false;
  struct OpGuard {
    UcxEngine* e;
    ~OpGuard() { e->end_op(); }
  } op_guard{this};

  // Wait: spin on the worker first (no thread hand-off for fast answers),
  // then sleep until the progress thread completes the call.
  auto start = cs.t0 != Clock::time_point{} ? cs.t0 : Clock::now();
  auto spin = std::chrono::duration<double, std::micro>(call_spin_us_);
  bool has_deadline = cs.timeout_ms > 0;
  // From now, not from the send: a caller that started the call early and
  // worked meanwhile gives the response the whole timeout to arrive.
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double, std::milli>(cs.timeout_ms));
  bool timed_out = false;
  bool late_receive = false;  // past the deadline with the response on its way
  unsigned idle_spins = 0;
  struct SpinningCaller {
    std::atomic<int>& n;
    bool on = true;
    explicit SpinningCaller(std::atomic<int>& c) : n(c) {
      n.fetch_add(1, std::memory_order_acq_rel);
    }
    void stop() {
      if (on) n.fetch_sub(1, std::memory_order_acq_rel);
      on = false;
    }
    ~SpinningCaller() { stop(); }
  } spinning(spinning_callers_);
  auto done = [&] {
    return pc.send_done.load(std::memory_order_acquire) &&
           pc.response_done.load(std::memory_order_acquire);
  };
  // Set once the response is in while the send has not completed yet.
  std::optional<Clock::time_point> send_give_up;
  while (!done()) {
    auto now = Clock::now();
    if (pc.response_done.load(std::memory_order_acquire)) {
      // Answered, so the peer has the request, but UCX has not completed the
      // send: a peer killed before it acknowledged a rendezvous never does
      // (seen: SIGKILLed providers on shared memory, the caller looping on an
      // expired deadline forever). The deadline no longer applies; after a
      // grace period the call is ended without waiting for the send.
      has_deadline = false;
      late_receive = false;
      if (!send_give_up) {
        send_give_up = now + kGrace;
      } else if (now >= *send_give_up) {
        // The reply is complete: a call that owns its buffers lets the send
        // go with them (orphan()); one without a deadline waits for it.
        spinning.stop();
        *orphaned = end_send(cs, true);
        break;
      }
    }
    if (has_deadline && now >= deadline && !pc.response_done.load()) {
      if (take_back(cs)) {
        timed_out = true;
        // No longer polling: a listening engine's progress thread must
        // drive the worker again while the send is given its grace.
        spinning.stop();
        *orphaned = end_send(cs, false);
        break;
      }
      // The response is being received: give it a grace period, then let
      // the call go with the receive still under way (orphan()).
      has_deadline = false;
      late_receive = true;
      deadline = now + kGrace;
    }
    if (late_receive && now >= deadline && orphan(cs, true)) {
      timed_out = true;
      *orphaned = true;
      break;
    }
    if (now - start < spin) {
      // Yield now and then: when the peer shares this CPU, it must get to run.
      if (!progress() && (++idle_spins & 31) == 0) sched_yield();
      continue;
    }
    // Past the spin window: nap, and progress again on each wake in case the
    // progress thread is asleep on a transport that does not signal. A client
    // engine's progress thread parks while callers spin: unpark it now, or
    // nobody moves the worker until one of the two 1 ms naps ends.
    if (spinning.on) {
      spinning.stop();
      if (!listen_) {
        { std::lock_guard<std::mutex> g(park_mu_); }  // no lost wake-up
        park_cv_.notify_all();
      }
    }
    std::unique_lock<std::mutex> lk(pc.m);
    auto wake = now + std::chrono::milliseconds(1);
    if ((has_deadline || late_receive) && deadline < wake && deadline > now) wake = deadline;
    if (send_give_up && *send_give_up<wake&& * send_give_up> now) wake = *send_give_up;
    if (!pc.cv.wait_until(lk, wake, done)) {
      lk.unlock();
      progress_if_idle();
    }
  }
  if (!*orphaned) pc.finish();
  // Once orphaned, UCX frees the request when it completes.
  if (req != nullptr) ucp_request_free(req);
  if (timed_out) {
    reply->error = "timed out after " + std::to_string(static_cast<long long>(timeout_ms)) +
                   " ms waiting for " + ep->address;
    return Status::YOKAN_ERR_TIMEOUT;
  }
  if (!ok(pc.send_status)) {
    // A failed send may still have been answered (e.g. cancelled after delivery); trust the reply.
    if (!pc.claimed) {
      reply->error = "sending to " + ep->address + " failed";
      return pc.send_status;
    }
  }
  return Status::YOKAN_SUCCESS;
}

bool UcxEngine::take_back(CallState& cs) {
  std::lock_guard<std::mutex> g(pending_mu_);
  if (cs.pc.claimed) return false;
  pending_.erase(cs.seq);
  return true;
}

bool UcxEngine::orphan(CallState& cs, bool claimed) {
  if (!cs.owns_buffers) return false;
  PendingCall& pc = cs.pc;
  std::lock_guard<std::mutex> g(pc.m);
  // A claimed response writes into the caller's Reply until its rendezvous
  // receive is under way (into pc.rx): wait for that (it is a memcpy away).
  if (claimed && !pc.rx_pending && !pc.response_done.load()) return false;
  int refs = 0;
  if (!pc.send_done.load()) ++refs;
  if (pc.rx_pending && !pc.response_done.load()) ++refs;
  if (refs == 0) return false;
  pc.orphaned = true;
  pc.orphan_refs = refs;
  pc.orphan_count = &orphans_;
  orphans_.fetch_add(1);
  return true;
}

bool UcxEngine::end_send(CallState& cs, bool claimed) {
  PendingCall& pc = cs.pc;
  if (pc.send_done.load()) return false;
  ucp_request_cancel(worker_, cs.req);  // a no-op for sends in UCX 1.13; not in later ones
  if (!cs.nonblocking) {                // an event loop's call does not wait: it owns its buffers
    auto give_up = Clock::now() + kGrace;
    nap_until(pc, [&] { return pc.send_done.load() || Clock::now() >= give_up; });
  }
  if (pc.send_done.load()) return false;
  // A stopped peer never takes a rendezvous send (nor a dead link an eager
  // one), and UCX without peer-failure mode can neither cancel it nor
  // force-close its endpoint: the send stays UCX's, with buffers of its own.
  if (orphan(cs, claimed)) return true;
  // No deadline (abandoned): the send reads the caller's memory; wait.
  nap_until(pc, [&pc] { return pc.send_done.load(); });
  return false;
}

void UcxEngine::abandon_call(CallState& cs, bool* orphaned) {
  if (!cs.in_flight) return;
  cs.in_flight = false;
  PendingCall& pc = cs.pc;
  ucs_status_ptr_t req = cs.req;  // read now: an orphaned `cs` may go at any moment
  // A response being received right now (or failed by finalize) writes into
  // the call: let it finish. Otherwise none will come, as for a timeout.
  const bool claimed = !take_back(cs);
  *orphaned = end_send(cs, claimed);
  if (!*orphaned && claimed) {
    // A call with a deadline need not wait for its rendezvous receive.
    while (!pc.response_done.load() && !(*orphaned = orphan(cs, true)))
      nap_until(pc, [&pc] {
        return pc.response_done.load() || pc.rx_pending;  // (nap_until holds pc.m here)
      });
  }
  if (!*orphaned) pc.finish();
  if (req != nullptr) ucp_request_free(req);
  end_op();
}

Status UcxEngine::collect_call(CallState& cs, bool* orphaned) {
  PendingCall& pc = cs.pc;
  ucs_status_ptr_t req = cs.req;  // read now: an orphaned `cs` may go at any moment
  const Endpoint* ep = pc.ep;
  cs.in_flight = false;
  // The response is complete, so the peer had the request; a send UCX has
  // not finished yet (a rendezvous the peer never acknowledged) stays UCX's,
  // with the call's own copy of the body.
  if (!pc.send_done.load(std::memory_order_acquire)) *orphaned = end_send(cs, true);
  Status s = Status::YOKAN_SUCCESS;
  if (!*orphaned) {
    pc.finish();
    if (!ok(pc.send_status) && !pc.claimed) {
      pc.reply->error = "sending to " + ep->address + " failed";
      s = pc.send_status;
    }
  }
  if (req != nullptr) ucp_request_free(req);
  end_op();
  return s;
}

namespace {
// A call started by Engine::start_call. Holds the engine: a call in flight
// keeps the worker it was sent on alive.
class UcxCallInFlight final : public CallInFlight {
 public:
  UcxCallInFlight(std::shared_ptr<UcxEngine> engine, std::string meta, const Completion& done)
      : engine_(std::move(engine)), meta_(std::move(meta)), state_(new CallState) {
    state_->pc.owner = state_.get();
    if (done.queue) {
      state_->queue = done.queue;
      state_->nonblocking = true;
      state_->pc.completions = done.queue.get();
      state_->pc.cookie = done.cookie;
    }
  }
  ~UcxCallInFlight() override {
    if (!state_) return;  // collected, and left to UCX with its send
    const bool counted = state_->in_flight && state_->queue;
    std::shared_ptr<CompletionQueue> queue = state_->queue;
    bool orphaned = false;
    engine_->abandon_call(*state_, &orphaned);
    if (orphaned) (void)state_.release();  // now owned by its UCX callbacks
    if (counted) queue->call_ended();
  }
  Status wait(Reply* reply) override {
    if (!state_ || !state_->in_flight) return Status::YOKAN_ERR_INVALID_ARGS;  // waited for already
    bool orphaned = false;
    std::shared_ptr<CompletionQueue> queue = state_->queue;
    Status s = queue && ready() ? engine_->collect_call(*state_, &orphaned)
                                : engine_->await_call(*state_, &orphaned);
    *reply = std::move(reply_);
    if (orphaned) (void)state_.release();
    if (queue) queue->call_ended();
    return s;
  }
  bool ready() const override {
    return !state_ || state_->pc.response_done.load(std::memory_order_acquire);
  }
  Status expire(Reply* reply) override {
    if (!state_ || !state_->in_flight) return Status::YOKAN_ERR_INVALID_ARGS;
    if (ready()) return wait(reply);
    const double timeout_ms = state_->timeout_ms;
    const std::string address = state_->pc.ep->address;
    std::shared_ptr<CompletionQueue> queue = state_->queue;
    bool orphaned = false;
    engine_->abandon_call(*state_, &orphaned);
    if (orphaned) (void)state_.release();
    if (queue) queue->call_ended();
    reply->error = "timed out after " + std::to_string(static_cast<long long>(timeout_ms)) +
                   " ms waiting for " + address;
    return Status::YOKAN_ERR_TIMEOUT;
  }

  std::shared_ptr<UcxEngine> engine_;
  std::string meta_;
  Reply reply_;
  std::unique_ptr<CallState> state_;
};
}  // namespace

std::unique_ptr<CallInFlight> UcxEngine::start_call(const EndpointPtr& ep, uint16_t provider_id,
                                                    uint16_t rpc, std::string meta,
                                                    const std::vector<Segment>& body,
                                                    const CallOptions& options, Status* status) {
  CallOptions opts = options;
  opts.scatter = nullptr;  // the reply is kept whole until wait()
  if (ep && ep->failed.load(std::memory_order_relaxed)) {
    auto start = Clock::now();
    Reply r;
    *status = reconnect(ep, options.timeout_ms, &r);
    if (!ok(*status)) return nullptr;
    if (limited_timeout(opts.timeout_ms))  // one deadline for both
      opts.timeout_ms = std::max(
          1.0, opts.timeout_ms -
                   std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  auto call =
      std::make_unique<UcxCallInFlight>(shared_from_this(), std::move(meta), options.completion);
  *status = start_call(*call->state_, kAmRequest, ep, provider_id, rpc, call->meta_, body, opts,
                       &call->reply_);
  if (!ok(*status)) return nullptr;
  if (call->state_->queue) call->state_->queue->call_started();
  return call;
}

}  // namespace yokan
