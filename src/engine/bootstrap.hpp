// Bootstrap: how a peer learns this engine's UCX worker address from the
// address string a user passes around. A small socket server answers every
// connection with the worker address and closes it; nothing else travels on it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "engine/log_limiter.hpp"

namespace yokan {

struct ParsedAddress {
  std::string protocol;  // "tcp" or "na+sm"
  std::string host;      // tcp: IPv4 address or hostname
  int port = 0;          // tcp
  std::string sm_name;   // na+sm: "PID-N"
};

// Parses "tcp://HOST:PORT", "ofi+tcp://HOST:PORT", "na+sm://PID-N", "sm://PID-N".
// Throws yokan::Exception(YOKAN_ERR_INVALID_ARGS) with a message on bad input.
ParsedAddress parse_address(const std::string& address);

// Name of the network interface that owns `ipv4` ("lo" for 127.0.0.1), or ""
// when no interface has it.
std::string interface_of(const std::string& ipv4);
// IPv4 address of interface `name`, or "" if it has none.
std::string address_of_interface(const std::string& name);

// Watches sockets and calls a function when the peer closes one (its process
// died or its engine finalized). This is how both ends learn that the other
// is gone, independently of UCX, in a few microseconds on one host.
class FdWatcher {
 public:
  FdWatcher();
  ~FdWatcher();
  FdWatcher(const FdWatcher&) = delete;
  FdWatcher& operator=(const FdWatcher&) = delete;
  // Takes ownership of `fd`; `on_close` runs on the watcher thread.
  void add(int fd, std::function<void()> on_close);

 private:
  void run();
  std::mutex m_;
  std::map<int, std::function<void()>> fds_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// What the handshake needs to know on either side.
struct HandshakeConfig {
  std::string secret;            // empty: no authentication
  int timeout_ms = 5000;         // deadline for one whole handshake
  size_t max_clients = 1024;     // connected clients (sessions); more are refused
  size_t max_handshakes = 1024;  // handshakes in progress; the oldest makes room
};

// The bootstrap server: an event-driven handshake
// (docs/design/bootstrap-and-auth.md). One thread polls every connection;
// each has its own deadline, so idle or slow peers never delay others. Only a
// peer that completes the handshake (and proves the secret when one is set)
// learns the server's card (`payload`: worker addresses and network place,
// net_place.hpp) and gets its own card passed to `admit`. Diagnostics a peer can trigger are logged
// rate-limited.
class BootstrapServer {
 public:
  // `admit(token, card)` validates and registers a client; it
  // returns "" on success or a message sent to the client. `on_client(fd,
  // token)` then takes the connection, kept open as a liveness signal, and
  // must decrement `sessions()` when it closes; `on_client(-1, token)` says
  // that an admitted client's connection failed before it was handed over
  // (forget the token). Both run on the bootstrap thread.
  BootstrapServer(const ParsedAddress& where, std::string payload, HandshakeConfig config,
                  std::function<std::string(uint64_t token, const std::string& card)> admit,
                  std::function<void(int fd, uint64_t token)> on_client);
  ~BootstrapServer();
  BootstrapServer(const BootstrapServer&) = delete;
  BootstrapServer& operator=(const BootstrapServer&) = delete;

  // The number of connected clients; shared so that it outlives the server.
  std::shared_ptr<std::atomic<long>> sessions() const { return sessions_; }

  // The address string peers use, e.g. "tcp://127.0.0.1:40123" (a wildcard
  // listen shows a routable address of this host, never 0.0.0.0).
  const std::string& address() const { return address_; }

 private:
  struct Conn;
  void serve();
  bool advance(Conn& c);  // false: the connection is finished (closed or handed over)

  int listen_fd_ = -1;
  bool unix_ = false;
  int stop_pipe_[2] = {-1, -1};
  std::string payload_;
  std::string address_;
  HandshakeConfig config_;
  std::function<std::string(uint64_t, const std::string&)> admit_;
  std::function<void(int, uint64_t)> on_client_;
  std::shared_ptr<std::atomic<long>> sessions_ = std::make_shared<std::atomic<long>>(0);
  LogLimiter log_;
  std::thread thread_;
};

// Connects to a bootstrap server, runs the handshake (proving `secret` when
// set, and checking that the server proves it too), registers
// `my_card` (net_place.hpp) under `token`, and returns the server's card
// and the connection, which the caller keeps open for as long as it talks to
// that peer. Throws yokan::Exception: YOKAN_ERR_PERMISSION when the tokens do
// not match, YOKAN_ERR_BUSY when the server is full, YOKAN_ERR_FROM_MERCURY
// when nobody answers in time.
std::pair<std::string, int> bootstrap_connect(const ParsedAddress& where, uint64_t token,
                                              const std::string& my_card, const std::string& secret,
                                              int timeout_ms);

}  // namespace yokan
