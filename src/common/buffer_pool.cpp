#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "yokan/buffer.hpp"

namespace yokan::buffer_pool {

namespace {
constexpr size_t kPooledMin = size_t(1) << 20;
constexpr size_t kMaxIdleBytes = size_t(1) << 30;

struct Pool {
  std::mutex m;
  std::multimap<size_t, char*> idle;  // capacity -> block
  size_t idle_bytes = 0;
};
Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: buffers may be freed during exit
  return *p;
}
}  // namespace

char* acquire(size_t size, size_t* capacity) {
  if (size >= kPooledMin) {
    Pool& p = pool();
    std::lock_guard<std::mutex> g(p.m);
    // Reuse the smallest idle block that fits, unless it wastes more than half.
    auto it = p.idle.lower_bound(size);
    if (it != p.idle.end() && it->first / 2 <= size) {
      char* data = it->second;
      *capacity = it->first;
      p.idle_bytes -= it->first;
      p.idle.erase(it);
      return data;
    }
  }
  char* data = static_cast<char*>(std::malloc(size ? size : 1));
  if (!data) throw std::bad_alloc();
  *capacity = size;
  return data;
}

void release(char* data, size_t capacity) noexcept {
  if (!data) return;
  if (capacity >= kPooledMin) {
    Pool& p = pool();
    std::lock_guard<std::mutex> g(p.m);
    while (p.idle_bytes + capacity > kMaxIdleBytes && !p.idle.empty()) {
      auto oldest = p.idle.begin();  // evict the smallest first
      p.idle_bytes -= oldest->first;
      std::free(oldest->second);
      p.idle.erase(oldest);
    }
    if (capacity <= kMaxIdleBytes) {
      try {
        p.idle.emplace(capacity, data);
        p.idle_bytes += capacity;
        return;
      } catch (...) {
      }
    }
  }
  std::free(data);
}

}  // namespace yokan::buffer_pool
