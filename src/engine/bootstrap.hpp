// Bootstrap: how a peer learns this engine's UCX worker address from the
// address string a user passes around. A small socket server answers every
// connection with the worker address and closes it; nothing else travels on it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

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

class BootstrapServer {
 public:
  // tcp: listens on host:port (port 0 = any free port). na+sm: abstract unix
  // socket. Each client sends its token, receives `payload` and keeps the
  // connection open; `on_client(fd, token)` takes the connection.
  BootstrapServer(const ParsedAddress& where, std::string payload,
                  std::function<void(int fd, uint64_t token)> on_client);
  ~BootstrapServer();
  BootstrapServer(const BootstrapServer&) = delete;
  BootstrapServer& operator=(const BootstrapServer&) = delete;

  // The address string peers use, e.g. "tcp://127.0.0.1:40123".
  const std::string& address() const { return address_; }

 private:
  void serve();

  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::string payload_;
  std::string address_;
  std::function<void(int, uint64_t)> on_client_;
  std::thread thread_;
};

// Connects to a bootstrap server, sends `token` and returns the payload (the
// worker address) and the connection, which the caller keeps open for as long
// as it talks to that peer. Throws yokan::Exception(YOKAN_ERR_FROM_MERCURY)
// when nobody answers in time.
std::pair<std::string, int> bootstrap_connect(const ParsedAddress& where, uint64_t token,
                                              int timeout_ms);

}  // namespace yokan
