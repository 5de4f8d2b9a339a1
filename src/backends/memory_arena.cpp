#include "memory_arena.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <new>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack the name
#endif

namespace yokan::memory {
namespace {
// Ahead of a small store, prefault() goes this far whatever its size; ahead
// of a larger one, as far as the store is big (up to prefault_max): a store
// that grew fast is likely to go on growing.
constexpr size_t kMinAhead = 1 << 20;
// One step of prefault(): two pages, ~5 µs on the VM measured above. A
// request that arrives meanwhile waits for the step to end.
constexpr size_t kStep = 8 << 10;
}  // namespace

RecordArena::~RecordArena() {
  for (char* base : chunks_) {
    // ASan's poison outlives munmap: a later mapping at these addresses
    // would inherit the marks of the B-tree nodes that lived here.
    YOKAN_ARENA_UNPOISON(base, kChunk);
    munmap(base, kChunk);
  }
}

char* RecordArena::map_chunk() {
  void* p = mmap(nullptr, kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return static_cast<char*>(p);
}

char* RecordArena::next_chunk() {
  std::lock_guard<std::mutex> g(mu_);
  const size_t want = chunks_.empty() ? 0 : current_ + 1;
  if (want == chunks_.size()) {
    chunks_.reserve(chunks_.size() + 1);  // so that push_back cannot throw after mmap
    chunks_.push_back(map_chunk());
  }
  current_ = want;
  end_ = chunks_[want] + kChunk;
  return chunks_[want];
}

bool RecordArena::prefault() {
  if (prefault_max_ == 0) return false;
  // Nothing allocated since the last call found enough ahead: no lock, no
  // arithmetic (this runs on every idle turn of a provider).
  char* const next = next_.load(std::memory_order_relaxed);
  if (next == quiet_at_.load(std::memory_order_relaxed)) return false;
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !populate_works_ || chunks_.empty()) return false;
  char* const current_base = chunks_[current_];
  if (fill_chunk_ < current_ || (fill_chunk_ == current_ && fill_ < next)) {
    fill_chunk_ = current_;
    fill_ = next;
  }
  const size_t used = current_ * kChunk + (next - current_base);
  const size_t ahead =
      (fill_chunk_ - current_) * kChunk + (fill_ - chunks_[fill_chunk_]) - (next - current_base);
  if (ahead >= std::min(prefault_max_, std::max(kMinAhead, used))) {
    quiet_at_.store(next, std::memory_order_relaxed);
    return false;
  }
  if (fill_ == chunks_[fill_chunk_] + kChunk) {
    if (fill_chunk_ + 1 == chunks_.size()) {
      try {
        chunks_.reserve(chunks_.size() + 1);
        chunks_.push_back(map_chunk());
      } catch (const std::bad_alloc&) {
        return false;  // short of address space: records will fault as they come
      }
    }
    ++fill_chunk_;
    fill_ = chunks_[fill_chunk_];
  }
  char* from = fill_;
  char* to = std::min(from + kStep, chunks_[fill_chunk_] + kChunk);
  fill_ = to;
  lock.unlock();

  // Outside the lock, so that allocate() moving to the next chunk never waits
  // for the kernel. The range stays mapped until the arena is destroyed.
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  char* start = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(from) & ~(page - 1));
  if (madvise(start, to - start, MADV_POPULATE_WRITE) == 0) return true;
  if (errno == EINVAL) {  // a kernel without MADV_POPULATE_WRITE
    std::lock_guard<std::mutex> g(mu_);
    populate_works_ = false;
  }
  return false;  // ENOMEM and the like: try again on a later idle turn
}

}  // namespace yokan::memory
