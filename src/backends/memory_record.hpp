// One stored pair of the in-memory backends (map, unordered_map, set,
// unordered_set, array): a single heap block with the key and, when small,
// the value. A new pair costs one allocation and ~16 bytes of bookkeeping;
// the containers index 8-byte Slots that point at records.
//
// Large values (>= kShareFrom) live in a shared Buffer instead, so a reader
// can lend them to the transport (a zero-copy send) while the store goes on.
//
// Records come from the backend's arena; whoever creates a record passes the
// same arena to destroy it.
//
// Not thread-safe: the backend's lock covers records, except that a lent
// Buffer may outlive its record (shared ownership).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <utility>

#include "memory_arena.hpp"
#include "yokan/buffer.hpp"

namespace yokan::memory {

class Record {
 public:
  static constexpr size_t kShareFrom = 64 * 1024;

  // Throws std::bad_alloc; nothing is leaked then.
  static Record* create(RecordArena& arena, std::string_view key, std::string_view value) {
    const bool shared = value.size() >= kShareFrom;
    const size_t total = shared ? shared_block_size(key.size())
                                : block_size(sizeof(Record) + key.size() + value.size());
    void* block = arena.allocate(total);
    auto* r = new (block) Record(key.size());
    std::memcpy(r->bytes(), key.data(), key.size());
    if (shared) {
      try {
        new (r->large()) Shared(std::make_shared<Buffer>(value.data(), value.size()));
      } catch (...) {
        arena.release(block, total);
        throw;
      }
      r->capacity_ = kSharedMark;
    } else {
      r->capacity_ = static_cast<uint32_t>(total - sizeof(Record) - key.size());
      r->value_size_ = static_cast<uint32_t>(value.size());
      if (!value.empty()) copy_bytes(r->bytes() + key.size(), value.data(), value.size());
    }
    return r;
  }

  static void destroy(RecordArena& arena, Record* r) noexcept {
    const size_t total = r->is_shared() ? shared_block_size(r->key_size_)
                                        : sizeof(Record) + r->key_size_ + r->capacity_;
    if (r->is_shared()) r->large()->~Shared();
    r->~Record();
    arena.release(r, total);
  }

  std::string_view key() const { return {bytes(), key_size_}; }
  std::string_view value() const {
    if (is_shared()) return (*large())->view();
    return {bytes() + key_size_, value_size_};
  }
  // The shared block of a large value, or null for a small one.
  std::shared_ptr<const Buffer> shared() const { return is_shared() ? *large() : nullptr; }

  // Replaces the value. Returns the record that now holds the pair: this one
  // (written in place) or a new one, in which case this one is destroyed.
  // The caller holds the backend's write lock, so no new lender can appear.
  Record* assign(RecordArena& arena, std::string_view value) {
    if (value.size() >= kShareFrom) {
      if (!is_shared()) return replace(arena, value);
      Shared& block = *large();
      if (block.use_count() == 1) {
        // Pairs with the release of the last lender's reference.
        std::atomic_thread_fence(std::memory_order_acquire);
        block->resize(0);
        block->append(value.data(), value.size());
      } else {
        block = std::make_shared<Buffer>(value.data(), value.size());
      }
      return this;
    }
    // In place if it fits and does not strand much unused room.
    if (is_shared() || value.size() > capacity_ || capacity_ > 2 * value.size() + 64)
      return replace(arena, value);
    if (!value.empty()) copy_bytes(bytes() + key_size_, value.data(), value.size());
    value_size_ = static_cast<uint32_t>(value.size());
    return this;
  }

 private:
  using Shared = std::shared_ptr<Buffer>;
  static constexpr uint32_t kSharedMark = UINT32_MAX;

  explicit Record(size_t key_size) : key_size_(key_size) {}

  // Rounding up costs nothing (allocators round too) and lets a slightly
  // longer value be written in place later.
  static size_t block_size(size_t bytes) { return (bytes + 15) & ~size_t(15); }
  static size_t shared_block_size(size_t key_size) {
    return block_size(sizeof(Record) + large_offset(key_size) + sizeof(Shared));
  }

  static size_t large_offset(size_t key_size) {
    return (key_size + alignof(Shared) - 1) & ~(alignof(Shared) - 1);
  }
  bool is_shared() const { return capacity_ == kSharedMark; }
  char* bytes() { return reinterpret_cast<char*>(this + 1); }
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  Shared* large() const {
    return std::launder(
        reinterpret_cast<Shared*>(const_cast<char*>(bytes()) + large_offset(key_size_)));
  }

  Record* replace(RecordArena& arena, std::string_view value) {
    Record* fresh = create(arena, key(), value);
    destroy(arena, this);
    return fresh;
  }

  size_t key_size_;
  uint32_t value_size_ = 0;
  uint32_t capacity_ = 0;  // room for a small value, or kSharedMark
};

// The element the containers hold: a pointer to one record, which the
// backend creates and destroys (containers move slots around freely). The
// record pointer may change through a const element (an overwrite that needs
// a bigger block); the key, and so the element's place in the container,
// never does.
class Slot {
 public:
  explicit Slot(Record* record) noexcept : record_(record) {}

  std::string_view key() const { return record_->key(); }
  const Record& record() const { return *record_; }
  Record* get() const { return record_; }
  void assign(RecordArena& arena, std::string_view value) const {
    record_ = record_->assign(arena, value);
  }

 private:
  mutable Record* record_;
};

// Lets comparators and hashes take a Slot or a plain key alike (lookups by
// string_view without building a record).
inline std::string_view key_of(const Slot& s) { return s.key(); }
inline std::string_view key_of(std::string_view s) { return s; }

}  // namespace yokan::memory
