// yokan::copy_bytes (include/yokan/copy.hpp): the bytes arrive intact for
// every size around its thresholds and every destination offset, including
// the offsets it takes its own loop for, and neighbouring bytes are untouched.
#include <gtest/gtest.h>

#include <vector>

#include "yokan/copy.hpp"

namespace {

// Source and destination in one allocation, so that their distance modulo
// 4 KiB is (dst_offset - src_offset) whatever the allocator returns.
void expect_copy(size_t size, size_t src_offset, size_t dst_offset) {
  const size_t dst_at = (src_offset + size + 4095) / 4096 * 4096 + 4096 + dst_offset;
  std::vector<unsigned char> mem(dst_at + size + 4096);
  for (size_t i = 0; i < mem.size(); ++i) mem[i] = static_cast<unsigned char>(i * 131 + 7);
  const std::vector<unsigned char> before = mem;
  yokan::copy_bytes(mem.data() + dst_at, mem.data() + src_offset, size);
  for (size_t i = 0; i < mem.size(); ++i) {
    const bool copied = i >= dst_at && i < dst_at + size;
    ASSERT_EQ(mem[i], copied ? before[src_offset + i - dst_at] : before[i])
        << "size " << size << " src+" << src_offset << " dst+" << dst_offset << " byte " << i;
  }
}

TEST(CopyBytes, EverySizeAroundTheThresholds) {
  for (size_t size : {0, 1, 63, 64, 65, 2047, 2048, 2049, 2113, 4096, 4097, 65536 + 31,
                      (1 << 20) - 1, 1 << 20, (1 << 20) + 1})
    for (size_t dst_offset : {0, 1, 5, 31, 32, 33, 64})
      for (size_t src_offset : {0, 3}) expect_copy(size, src_offset, dst_offset);
}

TEST(CopyBytes, EveryDistanceModuloAPage) {
  // The distance between the two buffers modulo 4 KiB selects the path.
  for (size_t dst_offset = 0; dst_offset < 4096 + 70; dst_offset += (dst_offset < 70 ? 1 : 509))
    expect_copy(10000, 0, dst_offset);
  for (size_t src_offset = 1; src_offset < 40; ++src_offset) expect_copy(5000, src_offset, 0);
}

}  // namespace
