// The Engine over UCX UCP active messages.
//
// Message flow. Every message is one active message: a fixed WireHeader plus
// the caller's "meta" bytes as the AM header (or, when the meta is large, at the
// front of the body), and the body as the AM data. UCX picks eager or
// rendezvous for the body by size; a rendezvous body is received straight into
// its destination (for responses: the caller's own buffers when it supplied a
// scatter function).
//
// Connections. A client resolves an address through the bootstrap socket,
// creates a UCX endpoint from the server's worker address and sends HELLO with
// its own worker address and a random token. The server creates its own
// endpoint back to the client (with an error handler, so a dead client is
// noticed) and answers every later request from that token on it. UCX reply
// endpoints are not used because their lifetime after a peer failure is not
// ours to control.
//
// Threads. One progress thread polls the worker (spinning briefly, then
// sleeping on the worker's event fd); handlers run on a thread pool; callers
// spin on the worker themselves for a short while before sleeping, so a fast
// response needs no thread hand-off on the client side.
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
#include "engine/bootstrap.hpp"
#include "engine/liveness.hpp"
#include "engine/thread_pool.hpp"
#include "engine/wire_format.hpp"
#include "yokan/engine.hpp"

namespace yokan {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

class UcxEngine;

namespace {

// Bodies up to this size made of several pieces are copied into one buffer:
// cheaper than a long scatter list for UCX to walk.
constexpr size_t kCoalesceMax = 64 * 1024;
// ... and so are larger bodies whose pieces average less than this: copying
// them costs less than UCX walking a scatter list of that many entries.
constexpr size_t kCoalescePiece = 4096;
// Eager request bodies from this size on are handed to the handler in UCX's
// receive buffer rather than copied out (they arrived in several fragments,
// so UCX assembled them in memory of its own).
constexpr size_t kHoldFrom = 16 * 1024;

// How long a timed-out call waits for its cancelled send or a response
// already arriving before it force-closes the connection.
constexpr std::chrono::milliseconds kGrace{200};

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

// A UCX endpoint plus what we know of its peer. `mu` is held shared while
// sending and exclusively to close the UCX endpoint when the peer is gone.
class Endpoint {
 public:
  std::shared_mutex mu;
  ucp_ep_h ep = nullptr;  // null once closed
  std::string address;
  std::atomic<bool> failed{false};
  uint64_t peer_token = 0;  // server side: the client this endpoint answers
  // Client side: serialises reconnection; `gen` counts connections, so that
  // the liveness callback of an old connection cannot fail a new one.
  std::mutex connect_mu;
  std::atomic<uint64_t> gen{0};
};

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

  // The last touch of the call by a completer. The caller may see the flag
  // (it spins on the atomics without the mutex) and leave at once, taking
  // the PendingCall (its stack) with it; so the notify happens under the
  // mutex, and the caller takes the mutex once before leaving (finish()).
  void complete_response() {
    std::lock_guard<std::mutex> g(m);
    response_done.store(true, std::memory_order_release);
    cv.notify_all();
  }
  void complete_send(Status s) {
    std::lock_guard<std::mutex> g(m);
    send_status = s;
    send_done.store(true, std::memory_order_release);
    cv.notify_all();
  }
  // Waits for a completer still inside complete_*().
  void finish() { std::lock_guard<std::mutex> g(m); }
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
};

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
    if (ep && ep->failed.load(std::memory_order_relaxed)) {
      Status s = reconnect(ep, options.timeout_ms, reply);
      if (!ok(s)) return s;
    }
    return send_and_wait(kAmRequest, ep, provider_id, rpc, meta, body, options, reply);
  }
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
  Status start_call(CallState& cs, uint16_t am_id, const EndpointPtr& ep, uint16_t provider_id,
                    uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
                    const CallOptions& options, Reply* reply);
  Status await_call(CallState& cs);
  void abandon_call(CallState& cs);

 private:
  // For a call whose response no one will wait for (timed out, abandoned):
  // takes it out of the pending map and returns true, or returns false if a
  // response has claimed it already (then it is being completed).
  bool take_back(CallState& cs);
  // Cancels the call's send if it is still going and waits until it ended:
  // the send's buffers belong to the call.
  // After its deadline a cancelled rendezvous send may never end while the
  // peer is stopped: past a short grace the connection is force-closed
  // (which ends its operations) and the next call reconnects.
  void end_send(CallState& cs);
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
  void handle_hello(const WireHeader& h, std::string_view meta);
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
  int efd_ = -1;
  std::unique_ptr<FdWatcher> watcher_;
  std::unique_ptr<BootstrapServer> bootstrap_;
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

  std::mutex finalize_mu_;
  std::condition_variable finalize_cv_;
  std::map<uint64_t, std::function<void()>> finalize_hooks_;
  // Held while the idle tasks run (cancel_on_idle waits on it).
  std::mutex idle_mu_;
  std::map<uint64_t, std::function<bool()>> idle_tasks_;
  std::atomic<size_t> idle_count_{0};
  std::atomic<bool> finalized_{false};
  bool torn_down_ = false;
};

// ---------------------------------------------------------------------------
// Construction

namespace {

void set_ucx(ucp_config_t* cfg, const char* name, const std::string& value) {
  ucs_status_t s = ucp_config_modify(cfg, name, value.c_str());
  if (s != UCS_OK)
    throw Exception(
        Status::YOKAN_ERR_INVALID_CONFIG,
        std::string("invalid UCX setting ") + name + "=" + value + ": " + ucs_status_string(s));
}

uint64_t random_token() {
  std::random_device rd;
  uint64_t t = (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(getpid()) ^
               uint64_t(Clock::now().time_since_epoch().count());
  return t ? t : 1;
}

}  // namespace

UcxEngine::UcxEngine(const std::string& address, bool listen, const std::string& config_text)
    : listen_(listen), token_(random_token()) {
  try {
    config_ = config_text.empty() ? json::object() : json::parse(config_text);
  } catch (const json::exception& e) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    std::string("engine config is not valid JSON: ") + e.what());
  }
  if (!config_.is_object())
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, "engine config must be a JSON object");
  auto num = [&](const char* key, double def) {
    if (!config_.contains(key)) {
      config_[key] = def;
      return def;
    }
    if (!config_[key].is_number() || config_[key].get<double>() < 0)
      throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                      std::string("engine config: \"") + key + "\" must be a non-negative number");
    return config_[key].get<double>();
  };
  double threads_wanted = num("num_rpc_threads", 4);
  // Each is an OS thread: a typo like 1e5 must be refused, not abort the process.
  if (threads_wanted > 1024)
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                    "engine config: \"num_rpc_threads\" must be at most 1024");
  size_t threads = static_cast<size_t>(threads_wanted);
  liveness_ms_ = num("liveness_timeout_ms", 6000);
  connect_ms_ = num("connect_timeout_ms", 7000);
  if (!(connect_ms_ > 0) || connect_ms_ > 3.6e6) connect_ms_ = 7000;
  size_t rndv = static_cast<size_t>(num("rndv_threshold", 16384));
  spin_us_ = num("spin_us", 100);
  call_spin_us_ = num("call_spin_us", 2000);
  max_message_size_ = static_cast<size_t>(num("max_message_size", double(4ull << 30)));
  if (threads == 0) threads = 1;

  // Which UCX transports and which network device, from the address.
  std::string host = "127.0.0.1";
  int port = 0;
  std::string spec = address;
  auto sep = spec.find("://");
  protocol_ = sep == std::string::npos ? spec : spec.substr(0, sep);
  std::string rest = sep == std::string::npos ? "" : spec.substr(sep + 3);
  std::string tls, device;
  bool sm_only = false;
  if (protocol_ == "tcp" || protocol_ == "ofi+tcp" || protocol_ == "ucx+tcp" ||
      protocol_ == "verbs") {
    if (!rest.empty()) {
      auto colon = rest.rfind(':');
      std::string h = colon == std::string::npos ? rest : rest.substr(0, colon);
      if (colon != std::string::npos) {
        try {
          port = std::stoi(rest.substr(colon + 1));
        } catch (...) {
          throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "invalid port in \"" + address + "\"");
        }
        if (port < 0 || port > 65535)
          throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "invalid port in \"" + address + "\"");
      }
      if (!h.empty()) {
        std::string ip = address_of_interface(h);  // "tcp://IFACE"
        host = ip.empty() ? h : ip;
      }
    }
    if (host == "0.0.0.0") {
      device = "all";
    } else {
      device = interface_of(host);
      if (device.empty())
        throw Exception(Status::YOKAN_ERR_INVALID_ARGS,
                        "no local network interface has address " + host);
    }
    tls = protocol_ == "verbs" ? "rc,ud,sm,self" : "tcp,sm,self";
  } else if (protocol_ == "na+sm" || protocol_ == "sm" || protocol_ == "ucx+sm") {
    sm_only = true;
    tls = "sm,self";
    device = "lo";
  } else {
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS,
                    "unsupported protocol \"" + protocol_ + "\" (use tcp, na+sm or verbs)");
  }

  ucp_config_t* ucfg = nullptr;
  if (ucp_config_read(nullptr, nullptr, &ucfg) != UCS_OK)
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY, "cannot read UCX configuration");
  try {
    set_ucx(ucfg, "TLS", tls);
    set_ucx(ucfg, "NET_DEVICES", device);
    set_ucx(ucfg, "RNDV_THRESH", std::to_string(rndv));
    // UCX's newer protocol selection picks zero-copy shared-memory paths for
    // large active messages that the default one (in 1.13) does not: 3-8x the
    // bandwidth for 1-64 MiB values here. "ucx": {"PROTO_ENABLE": "n"} reverts.
    if (!std::getenv("UCX_PROTO_ENABLE")) set_ucx(ucfg, "PROTO_ENABLE", "y");
    // Our worker is shared by the progress thread, handler threads and
    // callers. With UCX's default spinlock, a thread preempted while holding
    // it (a peer woken on the same CPU) leaves the others spinning until the
    // scheduler's next tick: 4-8 ms per call for non-spinning peers on one
    // CPU, and a 64 MiB transfer whose caller spun on the lock for 30% of
    // its time. A mutex puts the waiter to sleep instead.
    if (!std::getenv("UCX_USE_MT_MUTEX")) set_ucx(ucfg, "USE_MT_MUTEX", "y");
    if (config_.contains("ucx")) {
      if (!config_["ucx"].is_object())
        throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                        "engine config: \"ucx\" must be an object");
      for (auto& [k, v] : config_["ucx"].items()) {
        if (!v.is_string())
          throw Exception(Status::YOKAN_ERR_INVALID_CONFIG,
                          "engine config: ucx." + k + " must be a string");
        set_ucx(ucfg, k.c_str(), v.get<std::string>());
      }
    }
  } catch (...) {
    ucp_config_release(ucfg);
    throw;
  }
  config_["transports"] = tls;
  config_["net_device"] = device;

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  ucs_status_t s = ucp_init(&params, ucfg, &context_);
  ucp_config_release(ucfg);
  if (s != UCS_OK)
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY,
                    std::string("ucp_init failed: ") + ucs_status_string(s));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_MULTI;
  s = ucp_worker_create(context_, &wp, &worker_);
  if (s != UCS_OK) {
    ucp_cleanup(context_);
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY,
                    std::string("ucp_worker_create failed: ") + ucs_status_string(s));
  }
  ucp_address_t* addr = nullptr;
  size_t addr_len = 0;
  ucp_worker_get_address(worker_, &addr, &addr_len);
  worker_address_.assign(reinterpret_cast<const char*>(addr), addr_len);
  ucp_worker_release_address(worker_, addr);
  ucp_worker_get_efd(worker_, &efd_);

  auto set_handler = [this](uint16_t id, ucp_am_recv_callback_t cb) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = id;
    hp.cb = cb;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    ucp_worker_set_am_recv_handler(worker_, &hp);
  };
  set_handler(kAmHello, &UcxEngine::on_hello);
  set_handler(kAmRequest, &UcxEngine::on_request);
  set_handler(kAmResponse, &UcxEngine::on_response);

  watcher_ = std::make_unique<FdWatcher>();
  if (listen_) {
    ParsedAddress where;
    where.protocol = protocol_;
    where.host = host;
    where.port = port;
    if (sm_only) where.sm_name = "self";
    bootstrap_ =
        std::make_unique<BootstrapServer>(where, worker_address_, [this](int fd, uint64_t token) {
          set_liveness_timers(fd, liveness_ms_);
          watcher_->add(fd, [this, token] { fail_peer(token); });
        });
    address_ = bootstrap_->address();
  } else {
    address_ = protocol_ + "://client";
  }
  try {
    pool_ = std::make_unique<ThreadPool>(threads);
  } catch (const std::system_error& e) {
    throw Exception(Status::YOKAN_ERR_INVALID_CONFIG, std::string("engine config: cannot start ") +
                                                          std::to_string(threads) +
                                                          " rpc threads: " + e.what());
  }
  progress_thread_ = std::thread([this] { progress_loop(); });
}

std::shared_ptr<Engine> Engine::create(const std::string& address, bool listen,
                                       const std::string& config) {
  // The last reference can be dropped on one of the engine's own threads: a
  // handler that held the last reference to a provider, which holds the
  // engine. That thread cannot join itself, nor free the worker it is still
  // inside; a new thread tears the engine down once it has returned.
  return std::shared_ptr<UcxEngine>(new UcxEngine(address, listen, config), [](UcxEngine* e) {
    if (e->runs_here())
      std::thread([e] { delete e; }).detach();
    else
      delete e;
  });
}

// ---------------------------------------------------------------------------
// Progress

void UcxEngine::progress_loop() {
  auto spin = std::chrono::duration<double, std::micro>(spin_us_);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd_, &ev);
  auto last_work = Clock::now();
  unsigned idle_spins = 0, idle_turns = 0;
  bool idle_busy = false;
  while (!stop_progress_.load(std::memory_order_acquire)) {
    // A client engine serves no requests: while a caller busy-polls the
    // worker for its reply, this thread has nothing to add but contention
    // for the CPU and the worker lock. It parks without arming the worker
    // (an armed worker makes the peer signal every message) and looks again
    // each millisecond, so a caller never pays for waking it.
    if (!listen_ && spinning_callers_.load(std::memory_order_acquire) > 0) {
      std::unique_lock<std::mutex> lk(park_mu_);
      park_cv_.wait_for(lk, std::chrono::milliseconds(1),
                        [this] { return stop_progress_.load() || spinning_callers_.load() == 0; });
      last_work = Clock::now();
      continue;
    }
    // A listening engine whose own callers busy-poll the worker: their passes
    // deliver incoming requests too (a request to an in-process provider is
    // even answered inside the caller's send). Taking the worker lock here
    // as well only makes each of them wait for it and wake us through the
    // kernel. Stay off it, without sleeping, so that requests from elsewhere
    // are still served the moment the callers stop.
    if (listen_ && spinning_callers_.load(std::memory_order_acquire) > 0) {
      if (!run_idle_tasks()) sched_yield();
      last_work = Clock::now();
      continue;
    }
    if (progress()) {
      last_work = Clock::now();
      continue;
    }
    // Idle tasks run on every turn while they have work, else on one turn
    // in 64 (asking them costs a lock and a call, paid by the next request)
    // and always before the thread goes to sleep.
    const bool spin_over = Clock::now() - last_work >= spin;
    if (idle_busy || spin_over || (++idle_turns & 63) == 0) idle_busy = run_idle_tasks();
    if (idle_busy || !spin_over) {
      if ((++idle_spins & 31) == 0) sched_yield();
      continue;
    }
    // Nothing to do for a while: arm the worker and sleep on its event fd.
    sleeping_.store(true, std::memory_order_release);
    ucs_status_t s = ucp_worker_arm(worker_);
    if (s == UCS_OK) {
      // Short naps while operations are under way, since not every transport
      // signals the event fd when one advances; long ones when idle.
      epoll_event out;
      epoll_wait(ep, &out, 1, inflight_.load(std::memory_order_acquire) > 0 ? 1 : 100);
    }
    sleeping_.store(false, std::memory_order_release);
    last_work = Clock::now();
  }
  close(ep);
}

bool UcxEngine::run_idle_tasks() {
  if (idle_count_.load(std::memory_order_acquire) == 0) return false;
  bool more = false;
  std::lock_guard<std::mutex> g(idle_mu_);
  for (auto& [token, task] : idle_tasks_) more |= task();
  return more;
}

// ---------------------------------------------------------------------------
// Sending

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

// ---------------------------------------------------------------------------
// Receiving requests (server side)

namespace {
bool parse_header(const void* header, size_t header_len, WireHeader* h, std::string_view* meta,
                  std::string_view* prefix) {
  if (header_len < sizeof(WireHeader)) return false;
  std::memcpy(h, header, sizeof *h);
  if (h->magic != kWireMagic) return false;
  size_t meta_here = (h->flags & kFlagMetaInBody) ? 0 : h->meta_len;
  size_t prefix_len = (h->flags & kFlagBodyPrefix) ? h->reserved : 0;
  if ((h->flags & kFlagMetaInBody) && prefix_len) return false;
  if (header_len != sizeof(WireHeader) + meta_here + prefix_len) return false;
  const char* p = static_cast<const char*>(header) + sizeof(WireHeader);
  *meta = {p, meta_here};
  *prefix = {p + meta_here, prefix_len};
  return true;
}

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

// ---------------------------------------------------------------------------
// Receiving responses (client side)

namespace {
void response_recv_done(void* request, ucs_status_t status, size_t length, void* user_data) {
  auto* pc = static_cast<PendingCall*>(user_data);
  ucp_request_free(request);
  if (status != UCS_OK) {
    pc->reply->status = Status::YOKAN_ERR_FROM_MERCURY;
    pc->reply->error = std::string("receiving the reply failed: ") + ucs_status_string(status);
  }
  if (pc->meta_in_body && status == UCS_OK) {
    size_t n = pc->meta_storage.size();
    pc->reply->meta.assign(pc->reply->body.data(), n);
    Buffer rest(pc->reply->body.data() + n, pc->reply->body.size() - n);
    pc->reply->body = std::move(rest);
  }
  pc->complete_response();
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
  if (scatter) {
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
  if (r == nullptr) {
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

// ---------------------------------------------------------------------------
// Endpoints

void UcxEngine::close_endpoint(Endpoint& ep) {
  std::unique_lock<std::shared_mutex> g(ep.mu);
  if (!ep.ep) return;
  // Force-close: completes every outstanding operation on it with an error,
  // so no caller waits on a dead peer.
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
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
  // transports. Peer death is detected through the bootstrap connection.
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

void UcxEngine::connect_endpoint(const std::shared_ptr<Endpoint>& ep, double budget_ms) {
  const std::string& address = ep->address;
  auto start = Clock::now();
  std::string remote_worker;
  int liveness_fd = -1;
  if (address == address_ && listen_) {
    remote_worker = worker_address_;
  } else {
    ParsedAddress where = parse_address(address);
    std::tie(remote_worker, liveness_fd) =
        bootstrap_connect(where, token_, static_cast<int>(std::min(budget_ms, 5000.0)));
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
  if (liveness_fd >= 0)
    watcher_->add(liveness_fd, [this, ep, gen] { fail_connection(ep.get(), gen, "lost"); });
  // HELLO: give the server our worker address so that it can answer us.
  std::string meta(8, '\0');
  std::memcpy(meta.data(), &token_, 8);
  meta += worker_address_;
  Reply reply;
  CallOptions opts;
  double spent = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  opts.timeout_ms = std::max(100.0, budget_ms - spent);
  Status s = send_and_wait(kAmHello, ep, 0, 0, meta, {}, opts, &reply);
  if (!ok(s) || !ok(reply.status)) {
    fail_connection(raw, gen, "failed");
    std::string why =
        !reply.error.empty() ? reply.error : std::string(status_message(ok(s) ? reply.status : s));
    throw Exception(Status::YOKAN_ERR_FROM_MERCURY, "no answer from " + address + " (" + why + ")");
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
    std::lock_guard<std::mutex> g(ep->connect_mu);
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
  std::lock_guard<std::mutex> g(ep->connect_mu);
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
    return e.code() == Status::YOKAN_ERR_INVALID_MID ? e.code() : Status::YOKAN_ERR_FROM_MERCURY;
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

// ---------------------------------------------------------------------------
// Calls

namespace {
void call_send_done(void* request, ucs_status_t status, void* user_data) {
  static_cast<PendingCall*>(user_data)->complete_send(
      status == UCS_OK ? Status::YOKAN_SUCCESS : Status::YOKAN_ERR_FROM_MERCURY);
}
}  // namespace

Status UcxEngine::send_and_wait(uint16_t am_id, const EndpointPtr& ep, uint16_t provider_id,
                                uint16_t rpc, std::string_view meta,
                                const std::vector<Segment>& body, const CallOptions& options,
                                Reply* reply) {
  CallState cs;
  Status s = start_call(cs, am_id, ep, provider_id, rpc, meta, body, options, reply);
  return ok(s) ? await_call(cs) : s;
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
  const bool limited = options.timeout_ms > 0 && options.timeout_ms < kNoDeadlineMs;
  cs.timeout_ms = limited ? options.timeout_ms : 0;

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
  if (!(h.flags & kFlagMetaInBody) && segs.size() >= 2 &&
      total - segs.back().size <= kMaxBodyPrefix && segs.back().size > kCoalesceMax) {
    for (size_t i = 0; i + 1 < segs.size(); ++i)
      prefix.append(static_cast<const char*>(segs[i].data), segs[i].size);
    segs.erase(segs.begin(), segs.end() - 1);
    h.flags |= kFlagBodyPrefix;
    h.reserved = static_cast<uint16_t>(prefix.size());
  } else if (iov.size() + segs.size() > 1 &&
             (total + (iov.empty() ? 0 : meta.size()) <= kCoalesceMax ||
              total / segs.size() < kCoalescePiece)) {
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

Status UcxEngine::await_call(CallState& cs) {
  PendingCall& pc = cs.pc;
  ucs_status_ptr_t req = cs.req;
  cs.in_flight = false;
  struct OpGuard {
    UcxEngine* e;
    ~OpGuard() { e->end_op(); }
  } op_guard{this};

  // Wait: spin on the worker first (no thread hand-off for fast answers),
  // then sleep until the progress thread completes the call.
  auto start = Clock::now();
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
  while (!done()) {
    auto now = Clock::now();
    if (has_deadline && now >= deadline && !pc.response_done.load()) {
      if (take_back(cs)) {
        timed_out = true;
        // No longer polling: a listening engine's progress thread must
        // drive the worker again while the send is cancelled.
        spinning.stop();
        end_send(cs);
        break;
      }
      // The response is being received: give it a grace period, then
      // force-close the connection, which ends the receive with an error.
      has_deadline = false;
      late_receive = true;
      deadline = now + kGrace;
    }
    if (late_receive && now >= deadline) {
      late_receive = false;
      timed_out = true;
      fail_connection(pc.ep, cs.gen, "closed after a call timed out");
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
    if ((has_deadline || late_receive) && deadline < wake) wake = deadline;
    if (!pc.cv.wait_until(lk, wake, done)) {
      lk.unlock();
      progress_if_idle();
    }
  }
  pc.finish();
  if (req != nullptr) ucp_request_free(req);
  if (timed_out) {
    pc.reply->error = "timed out after " + std::to_string(static_cast<long long>(cs.timeout_ms)) +
                      " ms waiting for " + pc.ep->address;
    return Status::YOKAN_ERR_TIMEOUT;
  }
  if (!ok(pc.send_status)) {
    // A failed send may still have been answered (e.g. cancelled after delivery); trust the reply.
    if (!pc.claimed) {
      pc.reply->error = "sending to " + pc.ep->address + " failed";
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

void UcxEngine::end_send(CallState& cs) {
  PendingCall& pc = cs.pc;
  if (pc.send_done.load()) return;
  ucp_request_cancel(worker_, cs.req);
  auto give_up = Clock::now() + kGrace;
  nap_until(pc, [&] { return pc.send_done.load() || Clock::now() >= give_up; });
  if (pc.send_done.load()) return;
  // A stopped peer never takes a rendezvous send, and UCX cannot cancel it
  // then: force-close the connection, which ends it (the next call reconnects).
  fail_connection(pc.ep, cs.gen, "closed after a send timed out");
  nap_until(pc, [&pc] { return pc.send_done.load(); });
}

void UcxEngine::abandon_call(CallState& cs) {
  if (!cs.in_flight) return;
  cs.in_flight = false;
  PendingCall& pc = cs.pc;
  // A response being received right now (or failed by finalize) writes into
  // the call: let it finish. Otherwise none will come, as for a timeout.
  const bool claimed = !take_back(cs);
  end_send(cs);
  if (claimed) nap_until(pc, [&pc] { return pc.response_done.load(); });
  pc.finish();
  if (cs.req != nullptr) ucp_request_free(cs.req);
  end_op();
}

namespace {
// A call started by Engine::start_call. Holds the engine: a call in flight
// keeps the worker it was sent on alive.
class UcxCallInFlight final : public CallInFlight {
 public:
  UcxCallInFlight(std::shared_ptr<UcxEngine> engine, std::string meta)
      : engine_(std::move(engine)), meta_(std::move(meta)) {}
  ~UcxCallInFlight() override { engine_->abandon_call(state_); }
  Status wait(Reply* reply) override {
    if (!state_.in_flight) return Status::YOKAN_ERR_INVALID_ARGS;  // waited for already
    Status s = engine_->await_call(state_);
    *reply = std::move(reply_);
    return s;
  }

  std::shared_ptr<UcxEngine> engine_;
  std::string meta_;
  Reply reply_;
  CallState state_;
};
}  // namespace

std::unique_ptr<CallInFlight> UcxEngine::start_call(const EndpointPtr& ep, uint16_t provider_id,
                                                    uint16_t rpc, std::string meta,
                                                    const std::vector<Segment>& body,
                                                    const CallOptions& options, Status* status) {
  CallOptions opts = options;
  opts.scatter = nullptr;  // the reply is kept whole until wait()
  if (ep && ep->failed.load(std::memory_order_relaxed)) {
    Reply r;
    *status = reconnect(ep, options.timeout_ms, &r);
    if (!ok(*status)) return nullptr;
  }
  auto call = std::make_unique<UcxCallInFlight>(shared_from_this(), std::move(meta));
  *status = start_call(call->state_, kAmRequest, ep, provider_id, rpc, call->meta_, body, opts,
                       &call->reply_);
  if (!ok(*status)) return nullptr;
  return call;
}

// ---------------------------------------------------------------------------
// Shutdown

void UcxEngine::finalize() {
  if (finalized_.exchange(true)) return;
  std::map<uint64_t, std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> g(finalize_mu_);
    hooks.swap(finalize_hooks_);
  }
  for (auto& [token, fn] : hooks) fn();
  bootstrap_.reset();
  watcher_.reset();  // closes the liveness connections: peers see us go
  pool_->stop();
  // Fail every call still waiting.
  std::vector<PendingCall*> waiting;
  {
    std::lock_guard<std::mutex> g(pending_mu_);
    for (auto& [seq, pc] : pending_) {
      pc->claimed = true;
      waiting.push_back(pc);
    }
    pending_.clear();
  }
  for (auto* pc : waiting) {
    pc->reply->status = Status::YOKAN_ERR_INVALID_MID;
    pc->complete_response();
  }
  { std::lock_guard<std::mutex> g(finalize_mu_); }
  finalize_cv_.notify_all();
}

void UcxEngine::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  std::vector<std::shared_ptr<Endpoint>> all;
  {
    std::lock_guard<std::mutex> g(endpoints_mu_);
    for (auto& [k, v] : lookups_) all.push_back(v);
    for (auto& [k, v] : peers_) all.push_back(v);
    for (auto& v : retired_) all.push_back(v);
    lookups_.clear();
    peers_.clear();
    retired_.clear();
  }
  // Close endpoints while the progress thread still runs, then stop it.
  watcher_.reset();  // no more liveness callbacks
  for (auto& ep : all) close_endpoint(*ep);
  stop_progress_ = true;
  ucp_worker_signal(worker_);
  park_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  for (int i = 0; i < 100; ++i) progress();
  release_held();
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
}

}  // namespace yokan
