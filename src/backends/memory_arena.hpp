// Memory for the records of one in-memory backend (blocks above kMaxBlock
// are passed on to operator new).
//
// Why not operator new: a store that grows touches fresh pages, and on a
// virtual machine the first touch of a 4 KiB page costs ~2.5 µs (measured:
// page faults were over half of the time of inserting a new 16 B / 64 B
// pair). Here records are carved from large mappings in address order, so
// the next pages to be used are known, and `prefault()` can fault them in
// while the provider has nothing else to do. Freed blocks are kept on a
// free list per 16-byte size class and reused by later records of the same
// class; the mappings go back to the system only with the arena.
//
// The containers' own nodes come from here too (ArenaAllocator): a B-tree
// leaf per ~30 new pairs was the other first touch of fresh memory.
//
// Thread-safety: allocate() and release() need the backend's write lock
// (one caller at a time). prefault() may run at the same time as they do,
// from another thread: it only ever populates pages (MADV_POPULATE_WRITE,
// which leaves contents as they are), under the arena's own mutex.
#pragma once

#include <absl/base/config.h>  // ABSL_HAVE_ADDRESS_SANITIZER, as absl's containers test it

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#if defined(ABSL_HAVE_ADDRESS_SANITIZER)
#include <sanitizer/asan_interface.h>
// A container built with AddressSanitizer poisons parts of its nodes (unused
// B-tree slots) and leaves that to the allocator to clear, as malloc does on
// reuse; so does the arena for every block it hands out.
#define YOKAN_ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define YOKAN_ARENA_UNPOISON(p, n) ((void)0)
#endif

namespace yokan::memory {

class RecordArena {
 public:
  static constexpr size_t kGrain = 16;
  // Larger blocks go to operator new: few of them fit in a page anyway.
  static constexpr size_t kMaxBlock = 1024;
  static constexpr size_t kChunk = 4 << 20;  // bytes per mapping

  // `prefault_max`: how far ahead of the records (in bytes) prefault() may
  // go; 0 turns it off.
  explicit RecordArena(size_t prefault_max) : prefault_max_(prefault_max) {}
  ~RecordArena();
  RecordArena(const RecordArena&) = delete;
  RecordArena& operator=(const RecordArena&) = delete;

  // `bytes`: a multiple of kGrain; above kMaxBlock, operator new serves it.
  // Throws std::bad_alloc.
  void* allocate(size_t bytes) {
    if (bytes > kMaxBlock) return ::operator new(bytes);
    void*& head = free_[bytes / kGrain - 1];
    if (head) {
      void* block = head;
      YOKAN_ARENA_UNPOISON(block, bytes);
      head = *static_cast<void**>(block);
      return block;
    }
    char* at = next_.load(std::memory_order_relaxed);
    if (static_cast<size_t>(end_ - at) < bytes) at = next_chunk();
    next_.store(at + bytes, std::memory_order_relaxed);
    YOKAN_ARENA_UNPOISON(at, bytes);
    return at;
  }

  // `bytes`: what was passed to allocate() for `block`.
  void release(void* block, size_t bytes) noexcept {
    if (bytes > kMaxBlock) return ::operator delete(block);
    void*& head = free_[bytes / kGrain - 1];
    YOKAN_ARENA_UNPOISON(block, sizeof(void*));  // the free-list link goes here
    *static_cast<void**>(block) = head;
    head = block;
  }

  // Faults in the next few pages ahead of the records, a bounded step (tens
  // of µs at most). Returns true if it did some and more remains to do.
  bool prefault();

 private:
  char* next_chunk();  // moves on to the next mapping; returns its start
  static char* map_chunk();

  const size_t prefault_max_;
  std::array<void*, kMaxBlock / kGrain> free_{};
  std::atomic<char*> next_{nullptr};      // read by prefault()
  std::atomic<char*> quiet_at_{nullptr};  // next_ when prefault() last had nothing to do
  char* end_ = nullptr;

  std::mutex mu_;               // guards the members below
  std::vector<char*> chunks_;   // each kChunk bytes
  size_t current_ = 0;          // index in chunks_ of the one being carved
  size_t fill_chunk_ = 0;       // prefault() has populated chunks_[fill_chunk_]
  char* fill_ = nullptr;        //   up to here
  bool populate_works_ = true;  // false once the kernel refused (before 5.14)
};

// A standard allocator on a RecordArena, for the containers that index the
// records. Same thread-safety as the arena: containers allocate only while
// they change, under the backend's write lock. The arena must outlive every
// container that uses it.
template <typename T>
class ArenaAllocator {
 public:
  using value_type = T;
  static_assert(alignof(T) <= RecordArena::kGrain, "the arena aligns blocks to kGrain");

  explicit ArenaAllocator(RecordArena& arena) noexcept : arena_(&arena) {}
  template <typename U>
  ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena_(other.arena()) {}

  T* allocate(size_t n) { return static_cast<T*>(arena_->allocate(bytes(n))); }
  void deallocate(T* p, size_t n) noexcept { arena_->release(p, bytes(n)); }
  RecordArena* arena() const noexcept { return arena_; }

  template <typename U>
  bool operator==(const ArenaAllocator<U>& other) const noexcept {
    return arena_ == other.arena();
  }
  template <typename U>
  bool operator!=(const ArenaAllocator<U>& other) const noexcept {
    return arena_ != other.arena();
  }

 private:
  static size_t bytes(size_t n) {
    if (n > (SIZE_MAX - RecordArena::kGrain) / sizeof(T)) throw std::bad_alloc();
    const size_t rounded = (n * sizeof(T) + RecordArena::kGrain - 1) & ~(RecordArena::kGrain - 1);
    return rounded ? rounded : RecordArena::kGrain;
  }
  RecordArena* arena_;
};

}  // namespace yokan::memory
