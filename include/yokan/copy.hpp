// copy_bytes: std::memcpy, except for one case where x86 `rep movsb` crawls.
//
// glibc copies blocks from about 2 KiB up to about the L2 size with `rep
// movsb` on CPUs that advertise fast string moves (ERMS/FSRM). On AMD Zen
// (measured on an EPYC VM with glibc 2.36) that instruction runs ~20x slower,
// ~2 GB/s against ~40, when the destination lies 1-31 bytes past the source
// modulo 4 KiB. Which case a copy falls in depends only on where its two
// buffers happen to sit, so the same put of a 96 KiB value took 13 or 66 µs
// depending on its neighbours. Copies in that case run a plain loop of
// 16-byte moves instead (15-25 GB/s there); all others are std::memcpy.
// Thread-safe, stateless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace yokan {

#if defined(__x86_64__) && defined(__GNUC__)
namespace detail {
inline void copy_by_chunks(char* dst, const char* src, size_t n) noexcept {
  struct Chunk {
    char bytes[64];
  };
  while (n >= sizeof(Chunk)) {
    Chunk c;
    __builtin_memcpy(&c, src, sizeof c);  // whole chunk loaded before any store
    __builtin_memcpy(dst, &c, sizeof c);
    src += sizeof c;
    dst += sizeof c;
    n -= sizeof c;
    // Hides the loop's shape from the optimiser, which would otherwise turn
    // it back into a call to memcpy.
    __asm__("" : "+r"(src), "+r"(dst));
  }
  std::memcpy(dst, src, n);
}
}  // namespace detail
#endif

inline void copy_bytes(void* dst, const void* src, size_t n) noexcept {
#if defined(__x86_64__) && defined(__GNUC__)
  // glibc's `rep movsb` range: from 2 KiB (+64), up to the L2 size
  // (512 KiB on Zen 3, 1 MiB on Zen 4); vector loops outside it.
  constexpr size_t kRepMovsbFrom = 2048;
  constexpr size_t kRepMovsbUpTo = 1 << 20;
  const uintptr_t ahead =
      (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) & 4095;
  if (ahead != 0 && ahead < 32 && n > kRepMovsbFrom && n <= kRepMovsbUpTo)
    return detail::copy_by_chunks(static_cast<char*>(dst), static_cast<const char*>(src), n);
#endif
  std::memcpy(dst, src, n);
}

}  // namespace yokan
