#include "engine/net_place.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace yokan {

namespace fs = std::filesystem;

namespace {

std::string first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    out.push_back(it->path().filename().string());
  std::set<std::string> sorted(out.begin(), out.end());  // stable order for UCX
  return {sorted.begin(), sorted.end()};
}

// The port of RDMA device `dev` that carries `iface`.
std::string port_of(const fs::path& sysfs, const std::string& dev, const std::string& iface) {
  fs::path ports = sysfs / "class/infiniband" / dev / "ports";
  std::vector<std::string> all = names_in(ports);
  for (const auto& port : all)  // RoCE: each GID names its network device
    for (const auto& gid : names_in(ports / port / "gid_attrs/ndevs"))
      if (first_line(ports / port / "gid_attrs/ndevs" / gid) == iface) return port;
  if (all.size() == 1) return all[0];
  std::string dev_port = first_line(sysfs / "class/net" / iface / "dev_port");  // IPoIB
  if (!dev_port.empty() && dev_port.find_first_not_of("0123456789") == std::string::npos &&
      dev_port.size() < 4)
    return std::to_string(std::stoi(dev_port) + 1);
  return all.empty() ? "1" : all[0];
}

void put_u32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

bool get_piece(const std::string& in, size_t& at, std::string& out) {
  uint32_t n = 0;
  if (in.size() - at < 4) return false;
  std::memcpy(&n, in.data() + at, 4);
  at += 4;
  if (in.size() - at < n) return false;
  out.assign(in, at, n);
  at += n;
  return true;
}

constexpr char kCardMagic[4] = {'Y', 'K', 'C', '1'};

}  // namespace

std::string rdma_devices_of(const std::string& iface, const std::string& sysfs) {
  if (iface.empty() || iface.find('/') != std::string::npos || iface == "." || iface == "..")
    return {};
  std::string out;
  try {
    fs::path root(sysfs);
    for (const auto& dev : names_in(root / "class/net" / iface / "device/infiniband")) {
      if (!out.empty()) out += ',';
      out += dev + ":" + port_of(root, dev, iface);
    }
  } catch (...) {
    return {};
  }
  return out;
}

std::string network_place() {
  std::string boot = first_line("/proc/sys/kernel/random/boot_id");
  struct stat st {};
  if (boot.empty() || stat("/proc/self/ns/net", &st) != 0) return {};
  return boot + "/" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

std::string peer_of_socket(int fd) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return "unknown";
  char ip[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa.ss_family == AF_INET6) {
    auto* in = reinterpret_cast<sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in->sin6_port));
  }
  return sa.ss_family == AF_UNIX ? "local" : "unknown";
}

std::string encode_card(const PeerCard& card) {
  std::string out(kCardMagic, 4);
  for (const std::string* piece : {&card.worker, &card.worker_net, &card.place}) {
    put_u32(out, static_cast<uint32_t>(piece->size()));
    out += *piece;
  }
  return out;
}

std::optional<PeerCard> decode_card(const std::string& bytes) {
  if (bytes.size() < 4 || std::memcmp(bytes.data(), kCardMagic, 4) != 0) return std::nullopt;
  PeerCard card;
  size_t at = 4;
  if (!get_piece(bytes, at, card.worker) || !get_piece(bytes, at, card.worker_net) ||
      !get_piece(bytes, at, card.place) || at != bytes.size() || card.worker.empty())
    return std::nullopt;
  return card;
}

}  // namespace yokan
