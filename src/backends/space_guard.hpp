// A free-space check before writes, for storage libraries that a failed
// write (ENOSPC) can leave broken: they are kept from filling the disk.
//
// This complements error handling, it does not replace it: another process
// can still fill the disk between the check and the write, and then the
// library's own error is what the client gets.
//
// Cost: statvfs() is only called when the bytes allowed since the last call
// could have used a quarter of the space that was free then, so on a disk
// with room it runs about once per quarter of the free space written; near
// the limit, before every write.
//
// Thread-safety: allows() may be called concurrently; the estimate it keeps
// is then approximate, which the quarter margin absorbs.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace yokan {

class SpaceGuard {
 public:
  // `dir`: a directory on the filesystem to watch. `reserve`: bytes that must
  // stay free after any write (the library's own overhead: metadata, page
  // flushes), on top of twice the write's payload.
  SpaceGuard(std::string dir, uint64_t reserve) : dir_(std::move(dir)), reserve_(reserve) {}

  // True if a write of about `payload` bytes leaves enough room. `*free`
  // receives the free space last seen (for messages).
  bool allows(uint64_t payload, uint64_t* free) {
    const uint64_t need = reserve_ + 2 * payload;
    if (budget_.load(std::memory_order_relaxed) >= int64_t(2 * payload)) {
      budget_.fetch_sub(int64_t(2 * payload), std::memory_order_relaxed);
      *free = free_.load(std::memory_order_relaxed);
      return true;
    }
    struct statvfs st;
    if (::statvfs(dir_.c_str(), &st) != 0) return true;  // cannot tell: let the library try
    const uint64_t avail = uint64_t(st.f_bavail) * st.f_frsize;
    free_.store(avail, std::memory_order_relaxed);
    *free = avail;
    if (avail < need) return false;
    budget_.store(int64_t((avail - reserve_) / 4), std::memory_order_relaxed);
    return true;
  }

  // The message of a refused write.
  static std::string refusal(const char* backend, uint64_t free, uint64_t payload) {
    return std::string(backend) + ": No space left on device: " + std::to_string(free >> 10) +
           " KiB free, too little for a write of " + std::to_string(payload >> 10) +
           " KiB (the disk is not filled up: a write that fails half-way could break the "
           "database)";
  }

 private:
  const std::string dir_;
  const uint64_t reserve_;
  // Bytes that may still be written without a look (racing writers may take
  // it below zero, which only means the next one looks).
  std::atomic<int64_t> budget_{0};
  std::atomic<uint64_t> free_{0};
};

}  // namespace yokan
