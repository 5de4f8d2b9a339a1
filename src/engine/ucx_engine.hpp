// The Engine over UCX UCP active messages: the UcxEngine class and the
// state its parts share. Its definition is split by concern over
// src/engine/{engine_setup,progress,sending,incoming_requests,
// incoming_responses,endpoints,calls,shutdown}.cpp.
//
// Message flow. Every message is one active message: a fixed WireHeader plus
// the caller's "meta" bytes as the AM header (or, when the meta is large, at the
// front of the body), and the body as the AM data. UCX picks eager or
// rendezvous for the body by size; a rendezvous body is received straight into
// its destination (for responses: the caller's own buffers when it supplied a
// scatter function).
//
// Connections. A client resolves an address through the bootstrap socket:
// the handshake there (authenticated when the engine has a token, see
// docs/design/bootstrap-and-auth.md) trades the client's random token and
// card for the server's card (net_place.hpp): a worker address, the same
// without shared-memory transports, and the network place (boot id + network
// namespace). Each side picks from the other's card: the full address for a
// peer in the same place, else the network-only one, so that UCX cannot
// choose shared memory, whose wake-up signal cannot cross network
// namespaces. The server checks the address it picked, creates its own
// endpoint back to the client and files it under the token; the client then
// creates its endpoint and sends HELLO, which only confirms the path.
// Requests are dispatched only for tokens filed that way. A client engine is
// not pinned to a device, so that the server can connect back to it through
// whatever interface routes there. UCX reply
// endpoints are not used because their lifetime after a peer failure is not
// ours to control.
//
// Threads. One progress thread polls the worker (spinning briefly, then
// sleeping on the worker's event fd); handlers run on a thread pool; callers
// spin on the worker themselves for a short while before sleeping, so a fast
// response needs no thread hand-off on the client side.
#pragma once

#include <sched.h>
#include <sys/epoll.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "common/segments.hpp"
#include "engine/auth.hpp"
#include "engine/bootstrap.hpp"
#include "engine/liveness.hpp"
#include "engine/log_limiter.hpp"
#include "engine/net_place.hpp"
#include "engine/thread_pool.hpp"
#include "engine/wire_format.hpp"
#include "yokan/engine.hpp"

namespace yokan {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

class UcxEngine;

// Bodies up to this size made of several pieces are copied into one buffer:
// cheaper than a long scatter list for UCX to walk.
inline constexpr size_t kCoalesceMax = 64 * 1024;
// ... and so are larger bodies whose pieces average less than this: copying
// them costs less than UCX walking a scatter list of that many entries.
inline constexpr size_t kCoalescePiece = 4096;
// Eager request bodies from this size on are handed to the handler in UCX's
// receive buffer rather than copied out (they arrived in several fragments,
// so UCX assembled them in memory of its own).
inline constexpr size_t kHoldFrom = 16 * 1024;

// How long a timed-out call waits for its cancelled send or a response
// already arriving before it force-closes the connection.
inline constexpr std::chrono::milliseconds kGrace{200};

// A UCX endpoint plus what we know of its peer. `mu` is held shared while
// sending and exclusively to close the UCX endpoint when the peer is gone.
class Endpoint {
 public:
  std::shared_mutex mu;
  ucp_ep_h ep = nullptr;  // null once closed
  std::string address;
  std::atomic<bool> failed{false};
  uint64_t peer_token = 0;  // server side: the client this endpoint answers
  // Server side: the client's checked worker address from the handshake.
  // The UCX endpoint is made from it at the client's HELLO, not before: the
  // client's own connection to us exists by then, and UCX reuses it (made
  // first, ours could pick an interface of the client we cannot route to).
  std::string worker_address;
  // Client side: serialises reconnection; `gen` counts connections, so that
  // the liveness callback of an old connection cannot fail a new one.
  // (Timed: a caller waits for another's reconnection no longer than its own
  // budget.)
  std::timed_mutex connect_mu;
  std::atomic<uint64_t> gen{0};
  // Client side: our end of the bootstrap (liveness) socket of the current
  // connection; the watcher holds a dup of it. Shut down on reconnection, so
  // that neither end keeps the old one (guarded by connect_mu).
  int liveness_fd = -1;
};

struct CallState;

struct PendingCall {
  Reply* reply = nullptr;
  const Scatter* scatter = nullptr;
  Endpoint* ep = nullptr;
  std::vector<ucp_dt_iov_t> iov;  // rendezvous destinations
  std::string meta_storage;
  bool meta_in_body = false;
  bool claimed = false;  // a response arrived (guarded by the pending-map mutex)
  std::atomic<bool> send_done{false};
  std::atomic<bool> response_done{false};
  Status send_status = Status::YOKAN_SUCCESS;
  std::mutex m;
  std::condition_variable cv;

  // A call with a deadline (CallState::owns_buffers) may be let go at its
  // deadline while UCX still holds its send or its rendezvous receive: the
  // caller leaves and the CallState (`owner`, on the heap) then belongs to
  // the UCX callbacks still to come, the last of which deletes it.
  CallState* owner = nullptr;                // heap CallState this call lives in, if any
  Buffer rx;                                 // a deadline call's rendezvous reply lands here
  bool rx_pending = false;                   // rendezvous receive under way (guarded by m)
  bool orphaned = false;                     // the caller left (guarded by m)
  int orphan_refs = 0;                       // UCX callbacks still to come once orphaned
  std::atomic<int>* orphan_count = nullptr;  // the engine's count of orphans
  // Calls with a Completion: told when the response is in (under `m`, by
  // whoever sets response_done). Null for every other call: one branch.
  CompletionQueue* completions = nullptr;
  uint64_t cookie = 0;

  // The last touch of the call by a completer. The caller may see the flag
  // (it spins on the atomics without the mutex) and leave at once, taking
  // the PendingCall (its stack) with it; so the notify happens under the
  // mutex, and the caller takes the mutex once before leaving (finish()).
  void complete_response() {
    std::lock_guard<std::mutex> g(m);
    response_done.store(true, std::memory_order_release);
    cv.notify_all();
    if (completions) completions->post(cookie);
  }
  // Waits for a completer still inside complete_*().
  void finish() { std::lock_guard<std::mutex> g(m); }
  // For a UCX callback holding `lk` on `m`: if the caller has left, drops
  // this callback's share of the orphan (deleting it when last) and returns true.
  bool release_if_orphaned(std::unique_lock<std::mutex>& lk);
};

// What a call holds from its send until its response is in or it is given
// up: the send's buffers, the UCX request, the pending-map entry's target.
struct CallState {
  PendingCall pc;
  std::string head;
  std::vector<ucp_dt_iov_t> iov;
  std::unique_ptr<char[]> staging;
  ucs_status_ptr_t req = nullptr;
  uint64_t seq = 0;
  double timeout_ms = 0;
  uint64_t gen = 0;        // the connection of pc.ep the request went out on
  bool in_flight = false;  // sent, and neither awaited nor abandoned yet
  // Everything the send and a rendezvous reply touch belongs to this state,
  // none of it to the caller: set for calls with a deadline, whose state is
  // then on the heap (pc.owner) so that it can outlive the caller.
  bool owns_buffers = false;
  // When the deadline starts counting (send_and_wait: before the send and
  // its copies); default: when await_call starts.
  Clock::time_point t0{};
  // A call with a Completion (an event loop's): keeps its queue alive, owns
  // its buffers, and is ended (collect / abandon) without ever napping.
  std::shared_ptr<CompletionQueue> queue;
  bool nonblocking = false;
};

inline bool PendingCall::release_if_orphaned(std::unique_lock<std::mutex>& lk) {
  if (!orphaned) return false;
  if (--orphan_refs == 0) {
    std::atomic<int>* count = orphan_count;
    lk.unlock();
    delete owner;
    count->fetch_sub(1);
  }
  return true;
}

class UcxEngine;

class IncomingRequest final : public Request {
 public:
  IncomingRequest(UcxEngine* engine, const WireHeader& h, std::shared_ptr<Endpoint> peer)
      : engine_(engine), header_(h), peer_(std::move(peer)) {}
  ~IncomingRequest() override {
    if (!responded_) respond(Status::YOKAN_ERR_OTHER);
  }
  uint16_t rpc() const override { return header_.rpc; }
  uint16_t provider_id() const override { return header_.provider; }
  uint32_t timeout_ms() const override { return header_.timeout_ms; }
  std::string_view meta() const override {
    if (meta_in_body_) return body_.view().substr(0, header_.meta_len);
    return meta_;
  }
  std::string_view body() const override {
    return meta_in_body_ ? body_.view().substr(header_.meta_len) : body_.view();
  }
  void respond(Status status, std::string meta = {}, Buffer body = {}) override;
  bool abandoned() const override { return !peer_ || peer_->failed.load(); }

  std::string meta_;
  Buffer body_;
  bool meta_in_body_ = false;

 private:
  UcxEngine* engine_;
  WireHeader header_;
  std::shared_ptr<Endpoint> peer_;
  bool responded_ = false;
};

class UcxEngine final : public Engine, public std::enable_shared_from_this<UcxEngine> {
 public:
  UcxEngine(const std::string& address, bool listen, const std::string& config_text);
  ~UcxEngine() override {
    finalize();
    teardown();
  }

  std::string self_address() const override { return address_; }
  bool listening() const override { return listen_; }
  std::string protocol() const override { return protocol_; }
  std::string config() const override { return config_.dump(); }
  EndpointPtr lookup(const std::string& address) override;
  std::string endpoint_address(const EndpointPtr& ep) const override { return ep->address; }
  std::string endpoint_info(const EndpointPtr& ep) override;

  bool register_handler(uint16_t provider_id, uint16_t rpc, Handler handler,
                        bool run_inline) override {
    std::unique_lock<std::shared_mutex> g(handlers_mu_);
    return handlers_
        .emplace((uint32_t(provider_id) << 16) | rpc, Registered{std::move(handler), run_inline})
        .second;
  }
  void post(std::function<void()> job) override { pool_->post(std::move(job)); }
  void record_peer_events(bool on) override { record_peers_.store(on); }
  std::vector<PeerEvent> take_peer_events() override {
    std::lock_guard<std::mutex> g(peer_events_mu_);
    std::vector<PeerEvent> out(std::make_move_iterator(peer_events_.begin()),
                               std::make_move_iterator(peer_events_.end()));
    peer_events_.clear();
    return out;
  }
  bool provider_registered(uint16_t provider_id) const override {
    std::shared_lock<std::shared_mutex> g(handlers_mu_);
    auto it = handlers_.lower_bound(uint32_t(provider_id) << 16);
    return it != handlers_.end() && (it->first >> 16) == provider_id;
  }
  void deregister_provider(uint16_t provider_id) override {
    std::unique_lock<std::shared_mutex> g(handlers_mu_);
    auto it = handlers_.lower_bound(uint32_t(provider_id) << 16);
    while (it != handlers_.end() && (it->first >> 16) == provider_id) it = handlers_.erase(it);
  }
  void on_finalize(uint64_t token, std::function<void()> fn) override {
    std::lock_guard<std::mutex> g(finalize_mu_);
    finalize_hooks_[token] = std::move(fn);
  }
  void cancel_on_finalize(uint64_t token) override {
    std::lock_guard<std::mutex> g(finalize_mu_);
    finalize_hooks_.erase(token);
  }
  void on_idle(uint64_t token, std::function<bool()> task) override {
    std::lock_guard<std::mutex> g(idle_mu_);
    idle_tasks_[token] = std::move(task);
    idle_count_.store(idle_tasks_.size(), std::memory_order_release);
  }
  void cancel_on_idle(uint64_t token) override {
    std::lock_guard<std::mutex> g(idle_mu_);  // waits for a running task
    idle_tasks_.erase(token);
    idle_count_.store(idle_tasks_.size(), std::memory_order_release);
  }

  Status call(const EndpointPtr& ep, uint16_t provider_id, uint16_t rpc, std::string_view meta,
              const std::vector<Segment>& body, const CallOptions& options, Reply* reply) override {
    if (ep && ep->failed.load(std::memory_order_relaxed))
      return reconnect_and_call(ep, provider_id, rpc, meta, body, options, reply);
    return send_and_wait(kAmRequest, ep, provider_id, rpc, meta, body, options, reply);
  }
  // call() on a failed endpoint: reconnects it, then calls with what is left
  // of the timeout (one deadline for both).
  Status reconnect_and_call(const EndpointPtr& ep, uint16_t provider_id, uint16_t rpc,
                            std::string_view meta, const std::vector<Segment>& body,
                            const CallOptions& options, Reply* reply);
  // Reconnects a client endpoint whose connection failed (once per call);
  // on failure fills reply->error.
  Status reconnect(const EndpointPtr& ep, double timeout_ms, Reply* reply);
  std::unique_ptr<CallInFlight> start_call(const EndpointPtr& ep, uint16_t provider_id,
                                           uint16_t rpc, std::string meta,
                                           const CallOptions& options, Status* status) override {
    return start_call(ep, provider_id, rpc, std::move(meta), {}, options, status);
  }
  std::unique_ptr<CallInFlight> start_call(const EndpointPtr& ep, uint16_t provider_id,
                                           uint16_t rpc, std::string meta,
                                           const std::vector<Segment>& body,
                                           const CallOptions& options, Status* status) override;
  // send_and_wait in three parts. start_call sends (on success the call is
  // in flight and `meta`, `body`, `reply` and `cs` must outlive it); exactly
  // one of await_call (waits for the response) or abandon_call (gives it up)
  // then ends it.
  // A call with a deadline must have `cs` on the heap, owned by a
  // std::unique_ptr that await_call / abandon_call release when they orphan
  // it (see PendingCall::owner): `*orphaned` is then set to true.
  Status start_call(CallState& cs, uint16_t am_id, const EndpointPtr& ep, uint16_t provider_id,
                    uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
                    const CallOptions& options, Reply* reply);
  Status await_call(CallState& cs, bool* orphaned);
  void abandon_call(CallState& cs, bool* orphaned);
  // await_call for a nonblocking call whose response is in: ends it at once
  // (its send, if UCX still has it, is left to UCX with the call's state).
  Status collect_call(CallState& cs, bool* orphaned);

 private:
  // For a call whose response no one will wait for (timed out, abandoned):
  // takes it out of the pending map and returns true, or returns false if a
  // response has claimed it already (then it is being completed).
  bool take_back(CallState& cs);
  // At a call's deadline: gives its send (cancelled; UCX 1.13 cannot cancel
  // a send, though) a short grace to end, then, if it still has not and the
  // call owns its buffers, lets the call go (orphan()); without a deadline,
  // waits for the send. Returns true if the call was orphaned.
  bool end_send(CallState& cs, bool claimed);
  // Hands the call's state to the UCX callbacks still due (its send, its
  // rendezvous receive) if there are any and the call owns its buffers;
  // `claimed`: a response was claimed for it. Returns true if it did, and
  // then the caller must not touch `cs` again (nor free it).
  bool orphan(CallState& cs, bool claimed);
  // Waits until `ready()`, moving the worker on each wake (the call's
  // completions wake it, and every millisecond in case nothing signals).
  template <typename Ready>
  void nap_until(PendingCall& pc, Ready ready) {
    std::unique_lock<std::mutex> lk(pc.m);
    while (!ready()) {
      lk.unlock();
      progress_if_idle();
      lk.lock();
      pc.cv.wait_for(lk, std::chrono::milliseconds(1));
    }
  }

 public:
  void finalize() override;
  bool finalized() const override { return finalized_.load(); }
  bool wait_for_finalize(double timeout_ms) override {
    std::unique_lock<std::mutex> lk(finalize_mu_);
    auto done = [this] { return finalized_.load(); };
    if (timeout_ms < 0) {
      finalize_cv_.wait(lk, done);
      return true;
    }
    return finalize_cv_.wait_for(lk, std::chrono::duration<double, std::milli>(timeout_ms), done);
  }

  // True on the progress thread or a handler thread of this engine.
  bool runs_here() const {
    return std::this_thread::get_id() == progress_thread_.get_id() || (pool_ && pool_->runs_here());
  }

  // --- used by callbacks ---
  void send_message(Endpoint& ep, uint16_t am_id, WireHeader h, std::string meta, Buffer body);
  void dispatch(std::unique_ptr<IncomingRequest> req);
  ucp_worker_h worker() const { return worker_; }
  void wake_progress() {
    if (sleeping_.load(std::memory_order_acquire)) ucp_worker_signal(worker_);
  }

 private:
  static ucs_status_t on_hello(void* arg, const void* header, size_t header_len, void* data,
                               size_t len, const ucp_am_recv_param_t* param);
  static ucs_status_t on_request(void* arg, const void* header, size_t header_len, void* data,
                                 size_t len, const ucp_am_recv_param_t* param);
  static ucs_status_t on_response(void* arg, const void* header, size_t header_len, void* data,
                                  size_t len, const ucp_am_recv_param_t* param);

  ucs_status_t handle_incoming(const void* header, size_t header_len, void* data, size_t len,
                               const ucp_am_recv_param_t* param, bool hello);
  void handle_hello(const WireHeader& h);
  // Bootstrap thread: picks a worker address from a client's card, checks it
  // and files an endpoint to it under `token`. Returns "" or why it was
  // refused.
  std::string admit_peer(uint64_t token, const std::string& card_bytes);
  // Picks the worker address of `theirs` to connect to (the full one in our
  // network place, else the network-only one); sets *net_only accordingly
  // when given. Returns "" or why the peer (named `who`) cannot be reached.
  std::string choose_worker(const PeerCard& theirs, const std::string& who, std::string* worker,
                            bool* net_only) const;
  // Reads "auth", "handshake_timeout_ms", "max_clients" and "max_handshakes"
  // into handshake_; returns auth.allow_anonymous. Throws on bad values.
  bool parse_auth_config();
  // Sends one message as active message `am_id` and waits for its response.
  Status send_and_wait(uint16_t am_id, const EndpointPtr& ep, uint16_t provider_id, uint16_t rpc,
                       std::string_view meta, const std::vector<Segment>& body,
                       const CallOptions& options, Reply* reply);
  std::shared_ptr<Endpoint> create_endpoint(const std::string& worker_address,
                                            const std::string& label);
  void fail_endpoint(Endpoint* ep, const char* why = "lost");
  // fail_endpoint() if `ep` is still on connection `gen`.
  void fail_connection(Endpoint* ep, uint64_t gen, const char* why);
  // Connects `ep` (closed) to its address: bootstrap, UCX endpoint, HELLO.
  // Throws yokan::Exception naming the address and the cause.
  void connect_endpoint(const std::shared_ptr<Endpoint>& ep, double budget_ms);
  void fail_peer(uint64_t token);
  static void close_endpoint(Endpoint& ep);
  void progress_loop();
  bool run_idle_tasks();  // true if one has more to do
  // ucp_worker_progress, counted, so that a napping caller can stay out of
  // the way of a thread that is already moving data (see progress_if_idle).
  unsigned progress() {
    progressing_.fetch_add(1, std::memory_order_acq_rel);
    unsigned n = ucp_worker_progress(worker_);
    progressing_.fetch_sub(1, std::memory_order_acq_rel);
    if (releases_pending_.load(std::memory_order_acquire)) release_held();
    return n;
  }
  // A pass only if no other thread is in one: that thread completes our
  // operations too, and waiting for its lock would spin, for whole time
  // slices when it shares our CPU, while it needs that CPU to finish.
  void progress_if_idle() {
    if (progressing_.load(std::memory_order_acquire) == 0) progress();
  }
  void teardown();

  // Large eager request bodies stay in UCX's receive buffer while their
  // handler runs (handle_incoming) and are given back here, after a
  // ucp_worker_progress pass: never from inside the callback that received
  // them, which would return them before UCX has handed them over.
 public:
  void release_later(void* data) {
    std::lock_guard<std::mutex> g(release_mu_);
    to_release_.push_back(data);
    releases_pending_.store(true, std::memory_order_release);
  }

 private:
  void release_held() {
    std::vector<void*> batch;
    {
      std::lock_guard<std::mutex> g(release_mu_);
      batch.swap(to_release_);
      releases_pending_.store(false, std::memory_order_release);
    }
    for (void* data : batch) ucp_am_data_release(worker_, data);
  }
  std::mutex release_mu_;
  std::vector<void*> to_release_;
  std::atomic<bool> releases_pending_{false};

  json config_;
  std::string protocol_;
  std::string address_;
  bool listen_;
  uint64_t token_;
  size_t max_message_size_;
  double spin_us_;       // progress thread: busy-poll this long before sleeping
  double call_spin_us_;  // a waiting caller: progress itself this long before napping
  double liveness_ms_;   // bootstrap socket keepalive budget (0 = kernel defaults)
  double connect_ms_;    // bound of one lookup / reconnection
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string worker_address_;
  // Without shared-memory transports: what peers in another network place
  // get (another host, or another network namespace of this one, where
  // UCX's shared memory would be chosen and hang). "" for na+sm engines.
  std::string worker_net_address_;
  std::string place_;     // network_place(): boot id and network namespace
  std::string own_card_;  // encode_card() of the three above: what peers get
  int efd_ = -1;
  std::unique_ptr<FdWatcher> watcher_;
  std::unique_ptr<BootstrapServer> bootstrap_;
  HandshakeConfig handshake_;  // auth secret, handshake deadline, client caps
  LogLimiter drop_log_;        // diagnostics a peer can trigger at will
  std::unique_ptr<ThreadPool> pool_;
  std::thread progress_thread_;
  std::atomic<bool> stop_progress_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<int> progressing_{0};  // threads inside ucp_worker_progress
  // Callers of a client engine busy-polling the worker for their reply; the
  // progress thread parks meanwhile (see progress_loop).
  std::atomic<int> spinning_callers_{0};
  std::mutex park_mu_;
  std::condition_variable park_cv_;

 public:
  // Operations under way (calls, sends, receives). While any is, the progress
  // thread naps briefly instead of sleeping long: not every UCX transport
  // (self, cma) signals the worker's event fd when an operation advances.
  std::atomic<int> inflight_{0};
  void begin_op() {
    inflight_.fetch_add(1, std::memory_order_acq_rel);
    wake_progress();
  }
  void end_op() { inflight_.fetch_sub(1, std::memory_order_acq_rel); }

 private:
  struct Registered {
    Handler handler;
    bool run_inline;
  };
  mutable std::shared_mutex handlers_mu_;
  std::map<uint32_t, Registered> handlers_;

  std::mutex pending_mu_;
  std::unordered_map<uint64_t, PendingCall*> pending_;
  std::atomic<uint64_t> next_seq_{1};

  std::mutex endpoints_mu_;
  std::map<std::string, std::shared_ptr<Endpoint>> lookups_;       // client side
  std::unordered_map<uint64_t, std::shared_ptr<Endpoint>> peers_;  // server side, by token
  std::vector<std::shared_ptr<Endpoint>> retired_;                 // failed, closed at teardown

  // Client connections opening and closing (bootstrap accept / close).
  void note_peer(bool connected, const std::string& peer) {
    if (!record_peers_.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> g(peer_events_mu_);
    if (peer_events_.size() >= kMaxPeerEvents) peer_events_.pop_front();
    peer_events_.push_back({connected, peer});
  }
  std::atomic<bool> record_peers_{false};
  std::mutex peer_events_mu_;
  std::deque<PeerEvent> peer_events_;

  std::mutex finalize_mu_;
  std::condition_variable finalize_cv_;
  std::map<uint64_t, std::function<void()>> finalize_hooks_;
  // Held while the idle tasks run (cancel_on_idle waits on it).
  std::mutex idle_mu_;
  std::map<uint64_t, std::function<bool()>> idle_tasks_;
  std::atomic<size_t> idle_count_{0};
  std::atomic<bool> finalized_{false};
  bool torn_down_ = false;
  std::atomic<int> orphans_{0};  // calls let go with operations still in UCX
};

}  // namespace yokan
