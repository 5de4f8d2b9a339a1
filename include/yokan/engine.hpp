// The RPC engine: requests and responses as UCX active messages.
//
// An Engine owns one UCX context and worker, a progress thread and a pool of
// handler threads. Providers register handlers under (provider id, rpc id);
// clients send requests to an Endpoint and wait for the response.
//
// Addresses: "tcp://HOST:PORT" or "na+sm://PID-N". Either way the peer's UCX
// *worker address* is fetched through a tiny bootstrap socket (TCP, or an
// abstract unix socket for na+sm) and the UCX endpoint is created from it, so
// that two processes on one host talk over UCX shared memory while remote
// hosts use the network device the engine was pinned to.
//
// Thread-safety: every public method may be called from any thread.
// Errors: create() and lookup() throw yokan::Exception; call() returns a Status
// (YOKAN_ERR_TIMEOUT when the deadline passes, YOKAN_ERR_FROM_MERCURY when the
// transport fails or the peer dies).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "yokan/buffer.hpp"
#include "yokan/common.hpp"

namespace yokan {

// A borrowed span of bytes to send; must stay valid until call() returns.
struct Segment {
  const void* data;
  size_t size;
};

// A destination span for a response body.
struct Destination {
  void* data;
  size_t size;
};

class Endpoint;
using EndpointPtr = std::shared_ptr<Endpoint>;

// A request as a handler sees it. The handler (or whoever it hands the request
// to) must call respond() exactly once; a request destroyed without a response
// answers YOKAN_ERR_OTHER so that no client ever waits forever.
class Request {
 public:
  virtual ~Request() = default;
  virtual uint16_t rpc() const = 0;
  virtual uint16_t provider_id() const = 0;
  // Client-side deadline budget in ms (0 = none).
  virtual uint32_t timeout_ms() const = 0;
  virtual std::string_view meta() const = 0;
  virtual std::string_view body() const = 0;
  // Sends the response; `body` is moved into the engine and kept until sent.
  virtual void respond(Status status, std::string meta = {}, Buffer body = {}) = 0;
  // True once the requesting peer has gone away or stopped waiting.
  virtual bool abandoned() const = 0;
};
using RequestPtr = std::unique_ptr<Request>;
using Handler = std::function<void(RequestPtr)>;

// The response to a call. When the caller's scatter function accepted the
// body, it was written straight into the caller's destinations and `body` is
// empty.
struct Reply {
  Status status = Status::YOKAN_SUCCESS;
  std::string meta;
  Buffer body;
  bool scattered = false;
  // Why the call failed in the transport, naming the peer ("connection to
  // tcp://... lost", "timed out after 1000 ms waiting for ..."); empty when
  // the call reached the peer and got an answer.
  std::string error;
};
// Given the response meta and body length, fills `dst` with destinations whose
// sizes add up to exactly `body_len` and returns true; or returns false to
// receive the body into Reply::body.
using Scatter =
    std::function<bool(std::string_view meta, size_t body_len, std::vector<Destination>& dst)>;

// Where calls report that their response is in, for an event loop that
// cannot block in wait(): an eventfd that becomes readable when calls started
// with it (CallOptions::completion) complete, and the list of those calls.
// The engine writes the eventfd once per batch (when the list goes from empty
// to non-empty), not once per call. Thread-safety: post() from any thread,
// fd()/take() from the loop's thread. Errors: the constructor throws
// yokan::Exception (YOKAN_ERR_OTHER) if no eventfd can be made.
class CompletionQueue {
 public:
  CompletionQueue();
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  // Readable (level-triggered) while take() has something to return.
  int fd() const { return fd_; }
  // The engine: the call `cookie` is complete (its wait() will not block).
  void post(uint64_t cookie);
  // Drains the eventfd and returns the cookies posted since the last take(),
  // oldest first.
  std::vector<uint64_t> take();
  // Calls started with this queue and not yet collected or given up, and
  // the most there ever were at once (a structural measure of concurrency).
  size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  size_t peak_in_flight() const { return peak_.load(std::memory_order_relaxed); }
  void reset_peak() { peak_.store(in_flight()); }
  void call_started();
  void call_ended() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::vector<uint64_t> ready_;
  bool signalled_ = false;  // the eventfd was written since the last take()
  std::atomic<size_t> in_flight_{0}, peak_{0};
};

// A call that reports its completion to a CompletionQueue as `cookie`.
struct Completion {
  std::shared_ptr<CompletionQueue> queue;
  uint64_t cookie = 0;
};

// A call whose response is collected later, so that the caller can work
// while the peer does (Engine::start_call). Thread-safety: one thread at a
// time. Destroying it without wait() gives the call up: a late response is
// dropped, and the peer may still have done the work.
class CallInFlight {
 public:
  virtual ~CallInFlight() = default;
  // Waits for the response as call() would and returns call()'s status;
  // the timeout counts from this call, not from the send. A call started
  // with a Completion never blocks here once ready().
  // YOKAN_ERR_INVALID_ARGS if waited for already.
  virtual Status wait(Reply* reply) = 0;
  // True once the response (or the call's failure) is in; never blocks.
  virtual bool ready() const = 0;
  // At the caller's deadline (calls with a Completion, whose deadline the
  // caller keeps): wait() if ready(), otherwise gives the call up as
  // destroying it does and returns YOKAN_ERR_TIMEOUT with reply->error
  // saying so. Does not block for calls with a Completion.
  virtual Status expire(Reply* reply) = 0;
};

struct CallOptions {
  // <= 0, infinite, or >= kNoDeadlineMs: no deadline. Otherwise a hard limit:
  // the call returns within about timeout_ms + 0.5 s whatever the peer does,
  // reconnection included. To that end a call with a deadline sends from its
  // own copy of the body and receives a rendezvous reply into a buffer of its
  // own (one copy each way): at the deadline it is let go with its transfer
  // still in UCX, which finishes or drops it in the background (a timed-out
  // put may still be applied later). Calls without a deadline copy nothing.
  double timeout_ms = 0;
  bool no_rdma = false;  // force eager (inline) transfer of large bodies
  const Scatter* scatter = nullptr;
  // start_call only: report the completion there (then the call owns copies
  // of its body and reply, as a call with a deadline does, so that giving it
  // up never waits; the deadline is the caller's to keep, see
  // CallInFlight::expire). Empty: no report, no cost.
  Completion completion;
};

// Timeouts from this value on (about 31 years) mean "no limit".
constexpr double kNoDeadlineMs = 1e12;

class Engine {
 public:
  // `address`: "tcp", "tcp://HOST", "tcp://HOST:PORT", "tcp://IFACE", "na+sm", "sm",
  // "verbs" ... (see README). `listen`: server mode. `config`: JSON object text
  // ("" for defaults): {"num_rpc_threads": 4 (1..1024), "rndv_threshold": 16384,
  // "spin_us": 100, "call_spin_us": 2000, "liveness_timeout_ms": 6000
  // (a silent peer on a dead link is declared lost after about this long;
  // 0 = kernel defaults), "connect_timeout_ms": 7000 (bound of lookup():
  // bootstrap connect + HELLO), "ucx": {"TLS": "..."}}.
  //
  // Connections heal: an endpoint whose peer died or whose link failed is
  // closed, and the next call on it (or lookup of its address) reconnects in
  // place, so handles made before a provider restart keep working. Calls in
  // flight when the connection died fail with YOKAN_ERR_FROM_MERCURY and
  // Reply::error "connection to ADDR lost".
  static std::shared_ptr<Engine> create(const std::string& address, bool listen,
                                        const std::string& config = "");
  virtual ~Engine() = default;

  virtual std::string self_address() const = 0;
  virtual bool listening() const = 0;
  virtual std::string protocol() const = 0;
  virtual std::string config() const = 0;
  // Resolves an address string (cached); throws yokan::Exception on failure.
  virtual EndpointPtr lookup(const std::string& address) = 0;
  virtual std::string endpoint_address(const EndpointPtr& ep) const = 0;
  // Describes the UCX lanes of an endpoint (which transports it uses).
  virtual std::string endpoint_info(const EndpointPtr& ep) = 0;

  // Registers the handler of (provider_id, rpc). Returns false if taken.
  // `run_inline`: the handler never blocks for long, so it may run on the
  // thread that received the request (no hand-off); it can still post() work.
  virtual bool register_handler(uint16_t provider_id, uint16_t rpc, Handler handler,
                                bool run_inline = false) = 0;
  // Runs `job` on a handler thread.
  virtual void post(std::function<void()> job) = 0;
  virtual bool provider_registered(uint16_t provider_id) const = 0;
  virtual void deregister_provider(uint16_t provider_id) = 0;
  // Runs `fn` when the engine finalizes (before its threads stop).
  virtual void on_finalize(uint64_t token, std::function<void()> fn) = 0;
  virtual void cancel_on_finalize(uint64_t token) = 0;
  // Runs `task` on the engine's progress thread between messages, one short
  // step at a time (providers use it for their backend's background work):
  // `task` must return within a few µs, since a request that arrives
  // meanwhile waits for it, and says whether it has more to do; while it
  // does, the thread asks it every turn and does not sleep, otherwise one
  // idle turn in 64 and before going to sleep.
  virtual void on_idle(uint64_t token, std::function<bool()> task) = 0;
  // Once this returns, the task neither runs nor will run again.
  virtual void cancel_on_idle(uint64_t token) = 0;

  virtual Status call(const EndpointPtr& ep, uint16_t provider_id, uint16_t rpc,
                      std::string_view meta, const std::vector<Segment>& body,
                      const CallOptions& options, Reply* reply) = 0;

  // call() without a body, in two steps: sends now, and the returned call's
  // wait() collects the response (options.scatter is ignored: the reply is
  // kept whole). Null, with `*status` set, if the request could not be sent.
  virtual std::unique_ptr<CallInFlight> start_call(const EndpointPtr& ep, uint16_t provider_id,
                                                   uint16_t rpc, std::string meta,
                                                   const CallOptions& options, Status* status) = 0;
  // The same with a body, so that one thread can have calls to several peers
  // in flight at once (a batch split over shards). `body` is borrowed: the
  // memory it points to must stay valid until the call's wait() returns or
  // the call is destroyed.
  virtual std::unique_ptr<CallInFlight> start_call(const EndpointPtr& ep, uint16_t provider_id,
                                                   uint16_t rpc, std::string meta,
                                                   const std::vector<Segment>& body,
                                                   const CallOptions& options, Status* status) = 0;

  // A client's connection to this (listening) engine opening or closing, for
  // a service's log. `peer` is the client's "IP:PORT" ("local" for a
  // shared-memory address). One connection per client engine and provider
  // engine; a reconnection opens a new one.
  struct PeerEvent {
    bool connected;
    std::string peer;
  };
  // Recording is off until record_peer_events(true); it costs nothing per
  // request (events come from the bootstrap socket, not from calls).
  // take_peer_events() returns and forgets what was recorded, oldest first;
  // at most kMaxPeerEvents are kept between two takes (older ones dropped).
  // Thread-safe; throw nothing.
  static constexpr size_t kMaxPeerEvents = 4096;
  virtual void record_peer_events(bool on) { (void)on; }
  virtual std::vector<PeerEvent> take_peer_events() { return {}; }

  virtual void finalize() = 0;
  virtual bool finalized() const = 0;
  // Waits until finalize() is called; returns false if `timeout_ms` (>= 0) passed first.
  virtual bool wait_for_finalize(double timeout_ms = -1) = 0;
};

}  // namespace yokan
