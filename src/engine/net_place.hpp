// Where a process sits on the network, as the engine needs to know it before
// it connects: which RDMA devices back a network interface, whether a peer
// shares this process's network namespace, and the card a listening engine
// hands out through its bootstrap socket. Pure functions over the file
// system (sysfs, /proc); no UCX.
#pragma once

#include <optional>
#include <string>

namespace yokan {

// The RDMA devices behind network interface `iface`, in UCX's naming
// ("mlx5_0:1,mlx5_1:1"), read from `sysfs` (normally "/sys"):
// class/net/IFACE/device/infiniband/DEV names the devices; the port is the
// one whose class/infiniband/DEV/ports/P/gid_attrs/ndevs/* names IFACE
// (RoCE), else the device's only port, else class/net/IFACE/dev_port + 1
// (IPoIB). Returns "" when the interface has no RDMA device.
// Thread-safe; throws nothing.
std::string rdma_devices_of(const std::string& iface, const std::string& sysfs = "/sys");

// An identifier of this process's network namespace on this boot of this
// kernel ("BOOT_ID/NETNS_INODE"). Two processes with the same place reach
// each other through shared memory; processes in different network
// namespaces do not (UCX's shared-memory transports wake their peer through
// an abstract unix socket, which is per network namespace), and processes
// on different hosts never. "" if /proc cannot tell. Throws nothing.
std::string network_place();

// What a listening engine hands a connecting peer through its bootstrap
// socket: its full UCX worker address (shared memory included), its
// network-only worker address, and its network place.
// "IP:PORT" of the peer of connected socket `fd`, "local" for a unix
// socket, "unknown" if the kernel cannot say. Throws nothing.
std::string peer_of_socket(int fd);

struct PeerCard {
  std::string worker;      // for peers in the same place
  std::string worker_net;  // for every other peer ("" when it has none)
  std::string place;
};

std::string encode_card(const PeerCard& card);
// Bounds-checked; nullopt for anything that is not a well-formed card.
std::optional<PeerCard> decode_card(const std::string& bytes);

}  // namespace yokan
