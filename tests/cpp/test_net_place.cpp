// src/engine/net_place: the RDMA devices behind a network interface, read
// from a fake sysfs tree (no RDMA hardware needed), the network place, and
// the bootstrap card's encoding (bounds-checked decoding).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "engine/net_place.hpp"

namespace fs = std::filesystem;
using yokan::decode_card;
using yokan::encode_card;
using yokan::PeerCard;
using yokan::rdma_devices_of;

namespace {

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("yokan-sysfs-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "class/net");
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const fs::path& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text << "\n";
  }
  // Interface `iface` backed by RDMA device `dev` (as sysfs links them).
  void netdev(const std::string& iface, const std::string& dev) {
    fs::create_directories(root_ / "class/net" / iface / "device/infiniband" / dev);
  }
  void port(const std::string& dev, int p) {
    fs::create_directories(root_ / "class/infiniband" / dev / "ports" / std::to_string(p));
  }
  std::string map(const std::string& iface) { return rdma_devices_of(iface, root_.string()); }

  fs::path root_;
};

TEST_F(FakeSysfs, AnInterfaceWithoutRdmaHasNoDevice) {
  fs::create_directories(root_ / "class/net/eth0");
  EXPECT_EQ(map("eth0"), "");
  EXPECT_EQ(map("nosuch0"), "");
  EXPECT_EQ(map(""), "");
  EXPECT_EQ(map("../../etc"), "");
}

TEST_F(FakeSysfs, IpoibOnASinglePortDevice) {
  netdev("ib0", "mlx5_0");
  port("mlx5_0", 1);
  EXPECT_EQ(map("ib0"), "mlx5_0:1");
}

TEST_F(FakeSysfs, IpoibOnADualPortDeviceUsesDevPort) {
  netdev("ib1", "mlx4_0");
  port("mlx4_0", 1);
  port("mlx4_0", 2);
  write("class/net/ib1/dev_port", "1");  // 0-based in sysfs, 1-based in UCX
  EXPECT_EQ(map("ib1"), "mlx4_0:2");
}

TEST_F(FakeSysfs, RoceFindsThePortWhoseGidsNameTheInterface) {
  netdev("ens1f1", "mlx5_1");
  port("mlx5_1", 1);
  port("mlx5_1", 2);
  write("class/infiniband/mlx5_1/ports/1/gid_attrs/ndevs/0", "ens1f0");
  write("class/infiniband/mlx5_1/ports/2/gid_attrs/ndevs/0", "ens1f1");
  write("class/infiniband/mlx5_1/ports/2/gid_attrs/ndevs/1", "ens1f1");
  EXPECT_EQ(map("ens1f1"), "mlx5_1:2");
}

TEST_F(FakeSysfs, ABondOverTwoDevicesNamesBoth) {
  netdev("bond0", "mlx5_bond_1");
  netdev("bond0", "mlx5_bond_0");
  port("mlx5_bond_0", 1);
  port("mlx5_bond_1", 1);
  EXPECT_EQ(map("bond0"), "mlx5_bond_0:1,mlx5_bond_1:1");
}

TEST(NetworkPlace, IsStableAndNamesBootAndNamespace) {
  std::string place = yokan::network_place();
  ASSERT_FALSE(place.empty());
  EXPECT_EQ(place, yokan::network_place());
  EXPECT_NE(place.find('/'), std::string::npos);
}

TEST(PeerCard, RoundTrips) {
  PeerCard card{std::string("full\0address", 12), "net", "boot/1:2"};
  auto back = decode_card(encode_card(card));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->worker, card.worker);
  EXPECT_EQ(back->worker_net, card.worker_net);
  EXPECT_EQ(back->place, card.place);
}

TEST(PeerCard, RejectsEverythingMalformed) {
  std::string good = encode_card({"worker", "", "p"});
  EXPECT_TRUE(decode_card(good));
  EXPECT_FALSE(decode_card(""));
  EXPECT_FALSE(decode_card("worker"));  // a bare worker address is no card
  EXPECT_FALSE(decode_card(good + "x"));
  for (size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(decode_card(good.substr(0, n))) << n;
  std::string huge = good;
  huge[4] = '\xff';  // the first length far past the end
  huge[7] = '\x7f';
  EXPECT_FALSE(decode_card(huge));
  EXPECT_FALSE(decode_card(encode_card({"", "net", "p"})));  // no worker address
}

}  // namespace
