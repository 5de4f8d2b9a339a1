#include "engine/bootstrap.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/auth.hpp"
#include "yokan/common.hpp"

namespace yokan {
namespace {

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

// The IPv4 address of the first interface that `wanted` accepts, or "".
template <typename Wanted>
std::string first_ipv4(Wanted wanted) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {};
  std::string addr;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !wanted(*i)) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    addr = buf;
    break;
  }
  freeifaddrs(list);
  return addr;
}

std::string address_of_interface(const std::string& name) {
  return first_ipv4([&](const ifaddrs& i) { return name == i.ifa_name; });
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

// ---------------------------------------------------------------------------
// The handshake (docs/design/bootstrap-and-auth.md). All integers in network order.
//   client -> server  HELLO      magic u32, client nonce [32]
//   server -> client  CHALLENGE  magic u32, status u8, flags u8, msg_len u16,
//                                server nonce [32], server proof [32], msg
//   client -> server  PROOF      client proof [32], token u64, addr_len u32, addr
//   server -> client  RESULT     magic u32, status u8, pad [3], len u32,
//                                worker address (status 0) or message
namespace {
constexpr uint32_t kMagic2 = 0x594b4232;  // "YKB2"
constexpr size_t kHelloSize = 4 + auth::kNonceSize;
constexpr size_t kChallengeSize = 8 + auth::kNonceSize + auth::kMacSize;
constexpr size_t kProofSize = auth::kMacSize + 8 + 4;
constexpr size_t kResultSize = 12;
constexpr uint8_t kFlagAuth = 1;
constexpr size_t kMaxRefusing = 64;

uint64_t get_u64(const char* p) {
  uint32_t hi, lo;
  std::memcpy(&hi, p, 4);
  std::memcpy(&lo, p + 4, 4);
  return (uint64_t(ntohl(hi)) << 32) | ntohl(lo);
}
void put_u32(std::string& s, uint32_t v) {
  v = htonl(v);
  s.append(reinterpret_cast<const char*>(&v), 4);
}
void put_u64(std::string& s, uint64_t v) {
  put_u32(s, uint32_t(v >> 32));
  put_u32(s, uint32_t(v));
}
uint32_t get_u32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

std::string challenge(Status status, bool auth_on, const auth::Nonce& snonce,
                      const auth::Mac& proof, const std::string& msg) {
  std::string out;
  put_u32(out, kMagic2);
  out.push_back(static_cast<char>(static_cast<int>(status)));
  out.push_back(static_cast<char>(auth_on ? kFlagAuth : 0));
  uint16_t len = htons(static_cast<uint16_t>(std::min<size_t>(msg.size(), 1024)));
  out.append(reinterpret_cast<const char*>(&len), 2);
  out.append(reinterpret_cast<const char*>(snonce.data()), snonce.size());
  out.append(reinterpret_cast<const char*>(proof.data()), proof.size());
  out.append(msg.substr(0, 1024));
  return out;
}

std::string result(Status status, const std::string& data) {
  std::string out;
  put_u32(out, kMagic2);
  out.push_back(static_cast<char>(static_cast<int>(status)));
  out.append(3, '\0');
  put_u32(out, static_cast<uint32_t>(data.size()));
  out += data;
  return out;
}

std::string first_routable_ipv4() {
  std::string addr = first_ipv4(
      [](const ifaddrs& i) { return (i.ifa_flags & IFF_UP) && !(i.ifa_flags & IFF_LOOPBACK); });
  return addr.empty() ? "127.0.0.1" : addr;
}

// Each held connection costs one descriptor: make sure the cap, not the
// process's descriptor limit, is what refuses clients.
void raise_fd_limit(size_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
  rl.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
  setrlimit(RLIMIT_NOFILE, &rl);
}
}  // namespace

struct BootstrapServer::Conn {
  enum State { ReadHello, SendChallenge, ReadProof, ReadAddress, SendResult, Refuse, Drain };
  int fd = -1;
  State state = ReadHello;
  std::string in;
  size_t need = kHelloSize;
  std::string out;
  size_t out_off = 0;
  std::chrono::steady_clock::time_point deadline;
  auth::Nonce cnonce{}, snonce{};
  uint64_t token = 0;
  bool admitted = false;
};

BootstrapServer::BootstrapServer(const ParsedAddress& where, std::string payload,
                                 HandshakeConfig config,
                                 std::function<std::string(uint64_t, const std::string&)> admit,
                                 std::function<void(int, uint64_t)> on_client)
    : payload_(std::move(payload)),
      config_(std::move(config)),
      admit_(std::move(admit)),
      on_client_(std::move(on_client)) {
  raise_fd_limit(config_.max_clients + config_.max_handshakes + kMaxRefusing + 512);
  if (where.protocol == "na+sm" || where.protocol == "sm" || where.protocol == "ucx+sm") {
    unix_ = true;
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
    // A wildcard listen is reachable on every interface; peers need one
    // concrete address to dial, never 0.0.0.0.
    std::string shown = sa.sin_addr.s_addr == htonl(INADDR_ANY) ? first_routable_ipv4() : buf;
    address_ = where.protocol + "://" + shown + ":" + std::to_string(ntohs(sa.sin_port));
  }
  if (listen(listen_fd_, 1024) != 0 || pipe2(stop_pipe_, O_CLOEXEC) != 0)
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

bool BootstrapServer::advance(Conn& c) {
  for (;;) {
    if (c.out_off < c.out.size()) {
      ssize_t k = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      if (k <= 0) return false;
      c.out_off += static_cast<size_t>(k);
      if (c.out_off < c.out.size()) return true;
      c.out.clear();
      c.out_off = 0;
      if (c.state == Conn::SendChallenge) {
        c.state = Conn::ReadProof;
        c.need = kProofSize;
      } else if (c.state == Conn::SendResult) {
        if (!c.admitted) return false;
        ++*sessions_;
        on_client_(c.fd, c.token);
        c.fd = -1;  // handed over
        return false;
      } else if (c.state == Conn::Refuse) {
        // Let the client read the refusal before the connection goes away.
        shutdown(c.fd, SHUT_WR);
        c.state = Conn::Drain;
        c.need = 4096;
      }
      continue;
    }
    char buf[4096];
    size_t want = c.state == Conn::Drain ? sizeof buf : c.need - c.in.size();
    ssize_t k = recv(c.fd, buf, std::min(want, sizeof buf), MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (k <= 0) return false;
    if (c.state == Conn::Drain) continue;
    c.in.append(buf, static_cast<size_t>(k));
    if (c.in.size() < c.need) continue;
    const bool auth_on = !config_.secret.empty();
    if (c.state == Conn::ReadHello) {
      if (get_u32(c.in.data()) != kMagic2) {
        log_.log("dropped a connection to %s that is not a mochi-yokan handshake",
                 address_.c_str());
        return false;
      }
      std::memcpy(c.cnonce.data(), c.in.data() + 4, c.cnonce.size());
      c.snonce = auth::make_nonce();
      auth::Mac proof{};
      if (auth_on) proof = auth::prove(config_.secret, auth::Role::Server, c.cnonce, c.snonce);
      c.out = challenge(Status::YOKAN_SUCCESS, auth_on, c.snonce, proof, "");
      c.state = Conn::SendChallenge;
      c.in.clear();
    } else if (c.state == Conn::ReadProof) {
      auth::Mac mac;
      std::memcpy(mac.data(), c.in.data(), mac.size());
      c.token = get_u64(c.in.data() + auth::kMacSize);
      uint32_t len = get_u32(c.in.data() + auth::kMacSize + 8);
      if (auth_on && !auth::verify(config_.secret, auth::Role::Client, c.cnonce, c.snonce, mac)) {
        log_.log("refused a client on %s: wrong auth token", address_.c_str());
        c.out = result(Status::YOKAN_ERR_PERMISSION,
                       "permission denied: wrong auth token for " + address_);
        c.state = Conn::SendResult;
      } else if (len == 0 || len > kMaxPayload || c.token == 0) {
        log_.log("refused a client on %s: malformed handshake", address_.c_str());
        c.out = result(Status::YOKAN_ERR_INVALID_ARGS, address_ + " refused: malformed handshake");
        c.state = Conn::SendResult;
      } else {
        c.state = Conn::ReadAddress;
        c.need = len;
      }
      c.in.clear();
    } else if (c.state == Conn::ReadAddress) {
      std::string err = admit_ ? admit_(c.token, c.in) : std::string();
      c.admitted = err.empty();
      c.out = c.admitted ? result(Status::YOKAN_SUCCESS, payload_)
                         : result(Status::YOKAN_ERR_INVALID_ARGS, address_ + " refused: " + err);
      c.state = Conn::SendResult;
      c.in.clear();
    } else {
      return false;
    }
  }
}

void BootstrapServer::serve() {
  using clock = std::chrono::steady_clock;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<pollfd> fds;
  const auto timeout = std::chrono::milliseconds(config_.timeout_ms);
  for (;;) {
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({stop_pipe_[0], POLLIN, 0});
    auto now = clock::now();
    auto next = now + std::chrono::seconds(10);
    for (auto& c : conns) {
      short ev = c->out_off < c->out.size() ? POLLOUT : POLLIN;
      fds.push_back({c->fd, ev, 0});
      next = std::min(next, c->deadline);
    }
    int wait_ms = static_cast<int>(std::max<long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1));
    int r = poll(fds.data(), fds.size(), wait_ms);
    if (r < 0 && errno != EINTR) return;
    if (fds[1].revents) break;
    now = clock::now();
    // Existing connections first: their indices match `fds` from 2 on.
    std::vector<std::unique_ptr<Conn>> keep;
    keep.reserve(conns.size());
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = *conns[i];
      bool alive = true;
      if (r > 0 && fds[i + 2].revents) {
        try {
          alive = advance(c);
        } catch (const std::exception& e) {
          log_.log("handshake failed on %s: %s", address_.c_str(), e.what());
          alive = false;
        }
      }
      if (alive && now >= c.deadline) {  // too slow or idle: drop it
        alive = false;
        if (c.state != Conn::Refuse && c.state != Conn::Drain)
          log_.log("dropped a client that did not finish the handshake on %s in time",
                   address_.c_str());
      }
      if (alive) {
        keep.push_back(std::move(conns[i]));
      } else if (c.fd >= 0) {
        close(c.fd);
        if (c.admitted) on_client_(-1, c.token);  // admitted, but never told so
      }
    }
    conns.swap(keep);
    if (r > 0 && (fds[0].revents & POLLIN)) {
      // Accept everything that is waiting (the listening socket is
      // non-blocking: the loop ends on EAGAIN); each one gets its own state.
      for (int n = 0; n < 256; ++n) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        auto c = std::make_unique<Conn>();
        c->fd = fd;
        c->deadline = now + timeout;
        std::string why;
        Status st = Status::YOKAN_ERR_BUSY;
        if (unix_) {
          // Abstract unix sockets have no file permissions: check who is
          // calling. Our own uid and root are let in, nobody else.
          ucred cred{};
          socklen_t len = sizeof cred;
          if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
              (cred.uid != geteuid() && cred.uid != 0)) {
            why = "permission denied: " + address_ + " accepts only processes of uid " +
                  std::to_string(geteuid());
            st = Status::YOKAN_ERR_PERMISSION;
            log_.log("refused a shared-memory client of uid %u on %s", unsigned(cred.uid),
                     address_.c_str());
          }
        }
        if (why.empty() && size_t(std::max<long>(0, sessions_->load())) >= config_.max_clients) {
          why = "server busy: " + address_ +
                " already has max_clients=" + std::to_string(config_.max_clients) +
                " clients connected";
          log_.log("refused a client: %s", why.c_str());
        }
        if (!why.empty()) {
          size_t refusing = 0;
          for (auto& o : conns) refusing += o->state == Conn::Refuse || o->state == Conn::Drain;
          if (refusing >= kMaxRefusing) {
            close(fd);
            continue;
          }
          c->state = Conn::Refuse;
          c->deadline = now + std::chrono::seconds(1);
          c->out = challenge(st, false, auth::Nonce{}, auth::Mac{}, why);
          if (!advance(*c)) {
            close(c->fd);
            continue;
          }
        } else {
          // Handshakes in progress are capped too; when full, the oldest
          // one (an idle or slow peer) makes room, so that holding sockets
          // open can delay nobody by more than one handshake.
          size_t pending = 0;
          for (auto& o : conns) pending += o->state != Conn::Refuse && o->state != Conn::Drain;
          if (pending >= config_.max_handshakes) {
            for (auto it = conns.begin(); it != conns.end(); ++it) {
              if ((*it)->state == Conn::Refuse || (*it)->state == Conn::Drain) continue;
              close((*it)->fd);
              conns.erase(it);
              log_.log("dropped the oldest unfinished handshake on %s (max_handshakes=%zu)",
                       address_.c_str(), config_.max_handshakes);
              break;
            }
          }
        }
        conns.push_back(std::move(c));
      }
    }
  }
  for (auto& c : conns)
    if (c->fd >= 0) close(c->fd);
}

std::pair<std::string, int> bootstrap_connect(const ParsedAddress& where, uint64_t token,
                                              const std::string& my_card, const std::string& secret,
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
  auto bad = [&](Status s, const std::string& msg) {
    close(fd);
    fail(s, msg);
  };
  auto no_answer = [&] {
    bad(Status::YOKAN_ERR_FROM_MERCURY,
        "no valid answer from " + what + " (not a mochi-yokan engine, or it timed out)");
  };
  auth::Nonce cnonce = auth::make_nonce();
  std::string hello;
  put_u32(hello, kMagic2);
  hello.append(reinterpret_cast<const char*>(cnonce.data()), cnonce.size());
  char ch[kChallengeSize];
  if (!io_exact(fd, hello.data(), hello.size(), true, deadline)) no_answer();
  if (!io_exact(fd, ch, sizeof ch, false, deadline) || get_u32(ch) != kMagic2) no_answer();
  auto status = static_cast<Status>(static_cast<uint8_t>(ch[4]));
  bool server_auth = static_cast<uint8_t>(ch[5]) & kFlagAuth;
  uint16_t msg_len;
  std::memcpy(&msg_len, ch + 6, 2);
  msg_len = ntohs(msg_len);
  if (status != Status::YOKAN_SUCCESS) {
    std::string msg(std::min<size_t>(msg_len, 1024), '\0');
    if (!io_exact(fd, msg.data(), msg.size(), false, deadline)) msg = "refused";
    bad(status, "connection to " + what + " refused: " + msg);
  }
  auth::Nonce snonce;
  auth::Mac smac;
  std::memcpy(snonce.data(), ch + 8, snonce.size());
  std::memcpy(smac.data(), ch + 8 + snonce.size(), smac.size());
  if (server_auth && secret.empty())
    bad(Status::YOKAN_ERR_PERMISSION,
        "permission denied: " + what + " requires an auth token (engine config auth.token)");
  if (!server_auth && !secret.empty())
    bad(Status::YOKAN_ERR_PERMISSION,
        "permission denied: " + what + " does not authenticate, but this engine has an auth token");
  if (server_auth && !auth::verify(secret, auth::Role::Server, cnonce, snonce, smac))
    bad(Status::YOKAN_ERR_PERMISSION,
        "permission denied: " + what + " did not prove the auth token (wrong token?)");
  std::string proof;
  if (server_auth) {
    auth::Mac m = auth::prove(secret, auth::Role::Client, cnonce, snonce);
    proof.append(reinterpret_cast<const char*>(m.data()), m.size());
  } else {
    proof.append(auth::kMacSize, '\0');
  }
  put_u64(proof, token);
  put_u32(proof, static_cast<uint32_t>(my_card.size()));
  proof += my_card;
  char rh[kResultSize];
  if (!io_exact(fd, proof.data(), proof.size(), true, deadline)) no_answer();
  if (!io_exact(fd, rh, sizeof rh, false, deadline) || get_u32(rh) != kMagic2 ||
      get_u32(rh + 8) > kMaxPayload)
    no_answer();
  std::string payload(get_u32(rh + 8), '\0');
  if (!io_exact(fd, payload.data(), payload.size(), false, deadline)) no_answer();
  status = static_cast<Status>(static_cast<uint8_t>(rh[4]));
  if (status != Status::YOKAN_SUCCESS) bad(status, payload);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return {payload, fd};
}

}  // namespace yokan
