#include "engine/bootstrap.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "yokan/common.hpp"

namespace yokan {
namespace {

constexpr uint32_t kMagic = 0x594b4231;  // "YKB1"
constexpr uint32_t kMaxPayload = 1 << 16;

[[noreturn]] void fail(Status s, const std::string& msg) { throw Exception(s, msg); }

sockaddr_un abstract_address(const std::string& name, socklen_t* len) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::string path = "mochi-yokan-" + name;  // abstract namespace: leading NUL, no file
  std::memcpy(sa.sun_path + 1, path.data(), std::min(path.size(), sizeof(sa.sun_path) - 2));
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + path.size());
  return sa;
}

bool resolve_ipv4(const std::string& host, in_addr* out) {
  if (inet_pton(AF_INET, host.c_str(), out) == 1) return true;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return false;
  *out = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return true;
}

// Reads/writes exactly n bytes before the deadline.
bool io_exact(int fd, void* buf, size_t n, bool writing,
              std::chrono::steady_clock::time_point deadline) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd pfd{fd, static_cast<short>(writing ? POLLOUT : POLLIN), 0};
    int r = poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

}  // namespace

ParsedAddress parse_address(const std::string& address) {
  ParsedAddress out;
  auto sep = address.find("://");
  if (sep == std::string::npos)
    fail(Status::YOKAN_ERR_INVALID_ARGS,
         "malformed address \"" + address + "\" (expected PROTOCOL://...)");
  std::string proto = address.substr(0, sep);
  std::string rest = address.substr(sep + 3);
  if (proto == "tcp" || proto == "ofi+tcp" || proto == "ucx+tcp" || proto == "verbs") {
    out.protocol = proto;
    auto colon = rest.rfind(':');
    if (colon == std::string::npos)
      fail(Status::YOKAN_ERR_INVALID_ARGS, "address \"" + address + "\" has no port");
    out.host = rest.substr(0, colon);
    try {
      size_t used = 0;
      out.port = std::stoi(rest.substr(colon + 1), &used);
      if (used != rest.size() - colon - 1 || out.port <= 0 || out.port > 65535) throw 0;
    } catch (...) {
      fail(Status::YOKAN_ERR_INVALID_ARGS, "address \"" + address + "\" has an invalid port");
    }
  } else if (proto == "na+sm" || proto == "sm" || proto == "ucx+sm") {
    out.protocol = proto;
    if (rest.empty() || rest.size() > 64 ||
        rest.find_first_not_of("0123456789-") != std::string::npos)
      fail(Status::YOKAN_ERR_INVALID_ARGS, "malformed shared-memory address \"" + address + "\"");
    out.sm_name = rest;
  } else {
    fail(Status::YOKAN_ERR_INVALID_ARGS, "unknown protocol in address \"" + address + "\"");
  }
  return out;
}

std::string interface_of(const std::string& ipv4) {
  in_addr want{};
  if (!resolve_ipv4(ipv4, &want)) return {};
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string name;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    if (reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == want.s_addr) {
      name = i->ifa_name;
      break;
    }
  }
  freeifaddrs(list);
  return name;
}

std::string address_of_interface(const std::string& name) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string addr;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || name != i->ifa_name) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    addr = buf;
    break;
  }
  freeifaddrs(list);
  return addr;
}

FdWatcher::FdWatcher() {
  if (pipe2(wake_, O_CLOEXEC) != 0)
    fail(Status::YOKAN_ERR_SYSTEM, std::string("pipe: ") + std::strerror(errno));
  thread_ = std::thread([this] { run(); });
}

FdWatcher::~FdWatcher() {
  stop_ = true;
  char c = 0;
  (void)!write(wake_[1], &c, 1);
  if (thread_.joinable()) thread_.join();
  for (auto& [fd, fn] : fds_) close(fd);
  close(wake_[0]);
  close(wake_[1]);
}

void FdWatcher::add(int fd, std::function<void()> on_close) {
  {
    std::lock_guard<std::mutex> g(m_);
    fds_[fd] = std::move(on_close);
  }
  char c = 0;
  (void)!write(wake_[1], &c, 1);
}

void FdWatcher::run() {
  std::vector<pollfd> fds;
  while (!stop_) {
    fds.assign(1, pollfd{wake_[0], POLLIN, 0});
    {
      std::lock_guard<std::mutex> g(m_);
      for (auto& item : fds_) fds.push_back({item.first, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 1000) < 0) continue;
    if (fds[0].revents) {
      char buf[64];
      (void)!read(wake_[0], buf, sizeof buf);
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      char buf[64];
      ssize_t n = recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) continue;  // not closed
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> g(m_);
        auto it = fds_.find(fds[i].fd);
        if (it == fds_.end()) continue;
        fn = std::move(it->second);
        fds_.erase(it);
      }
      close(fds[i].fd);
      if (fn) fn();
    }
  }
}

BootstrapServer::BootstrapServer(const ParsedAddress& where, std::string payload,
                                 std::function<void(int, uint64_t)> on_client)
    : payload_(std::move(payload)), on_client_(std::move(on_client)) {
  if (where.protocol == "na+sm" || where.protocol == "sm" || where.protocol == "ucx+sm") {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    static std::atomic<int> counter{0};
    std::string name = std::to_string(getpid()) + "-" + std::to_string(counter++);
    socklen_t len = 0;
    sockaddr_un sa = abstract_address(name, &len);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0)
      fail(Status::YOKAN_ERR_FROM_MERCURY,
           std::string("cannot bind shared-memory address: ") + std::strerror(errno));
    address_ = where.protocol + "://" + name;
  } else {
    in_addr ip{};
    if (!resolve_ipv4(where.host, &ip))
      fail(Status::YOKAN_ERR_INVALID_ARGS, "cannot resolve host \"" + where.host + "\"");
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr = ip;
    sa.sin_port = htons(static_cast<uint16_t>(where.port));
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      fail(Status::YOKAN_ERR_FROM_MERCURY, "cannot listen on " + where.host + ":" +
                                               std::to_string(where.port) + ": " +
                                               std::strerror(errno));
    socklen_t len = sizeof sa;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, buf, sizeof buf);
    address_ = where.protocol + "://" + buf + ":" + std::to_string(ntohs(sa.sin_port));
  }
  if (listen(listen_fd_, 128) != 0 || pipe2(stop_pipe_, O_CLOEXEC) != 0)
    fail(Status::YOKAN_ERR_FROM_MERCURY,
         std::string("bootstrap listen failed: ") + std::strerror(errno));
  thread_ = std::thread([this] { serve(); });
}

BootstrapServer::~BootstrapServer() {
  if (stop_pipe_[1] >= 0) {
    char c = 0;
    (void)!write(stop_pipe_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]})
    if (fd >= 0) close(fd);
}

void BootstrapServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // The client sends [magic][token]; we answer [magic][length][worker
    // address] and keep the connection as a liveness signal.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    uint32_t magic = 0;
    uint64_t token = 0;
    uint32_t head[2] = {htonl(kMagic), htonl(static_cast<uint32_t>(payload_.size()))};
    bool good = io_exact(fd, &magic, sizeof magic, false, deadline) && ntohl(magic) == kMagic &&
                io_exact(fd, &token, sizeof token, false, deadline) &&
                io_exact(fd, head, sizeof head, true, deadline) &&
                io_exact(fd, payload_.data(), payload_.size(), true, deadline);
    if (good && on_client_) {
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      on_client_(fd, token);
    } else {
      close(fd);
    }
  }
}

std::pair<std::string, int> bootstrap_connect(const ParsedAddress& where, uint64_t token,
                                              int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int fd = -1;
  bool sm = !where.sm_name.empty();
  std::string what = sm ? where.protocol + "://" + where.sm_name
                        : where.protocol + "://" + where.host + ":" + std::to_string(where.port);
  if (sm) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = 0;
    sockaddr_un sa = abstract_address(where.sm_name, &len);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
      close(fd);
      fd = -1;
    }
  } else {
    in_addr ip{};
    if (!resolve_ipv4(where.host, &ip))
      fail(Status::YOKAN_ERR_INVALID_ARGS, "cannot resolve host \"" + where.host + "\"");
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr = ip;
    sa.sin_port = htons(static_cast<uint16_t>(where.port));
    int r = fd >= 0 ? connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) : -1;
    if (r != 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      int err = 0;
      socklen_t elen = sizeof err;
      if (poll(&pfd, 1, timeout_ms) == 1 &&
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
        r = 0;
    }
    if (r != 0 && fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0)
    fail(Status::YOKAN_ERR_FROM_MERCURY, "cannot reach " + what + " (nothing is listening there)");
  uint32_t head[2];
  std::string payload;
  uint32_t magic = htonl(kMagic);
  bool good = io_exact(fd, &magic, sizeof magic, true, deadline) &&
              io_exact(fd, &token, sizeof token, true, deadline) &&
              io_exact(fd, head, sizeof head, false, deadline) && ntohl(head[0]) == kMagic &&
              ntohl(head[1]) <= kMaxPayload;
  if (good) {
    payload.resize(ntohl(head[1]));
    good = io_exact(fd, payload.data(), payload.size(), false, deadline);
  }
  if (!good) {
    close(fd);
    fail(Status::YOKAN_ERR_FROM_MERCURY,
         "no valid answer from " + what + " (not a mochi-yokan engine?)");
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return {payload, fd};
}

}  // namespace yokan
