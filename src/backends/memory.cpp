// In-memory backends: map, unordered_map, set, unordered_set (one template),
// and null (discards everything). map/set keep their records in a B-tree
// (abseil's btree_set: nodes of many 8-byte slots, so a new pair adds one
// record allocation and a few bytes of index), the unordered ones in a
// Swiss table (abseil's flat_hash_set).
#include <absl/container/btree_set.h>
#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "config_reader.hpp"
#include "memory_record.hpp"

namespace yokan {
namespace {

// A lock that can be switched off by config (use_lock=false).
class OptionalLock {
 public:
  explicit OptionalLock(bool enabled) : enabled_(enabled) {}
  void lock() {
    if (enabled_) m_.lock();
  }
  void unlock() {
    if (enabled_) m_.unlock();
  }
  void lock_shared() {
    if (enabled_) m_.lock_shared();
  }
  void unlock_shared() {
    if (enabled_) m_.unlock_shared();
  }

 private:
  bool enabled_;
  std::shared_mutex m_;
};

template <typename Container, bool kSorted, bool kValues>
class MemoryBackend final : public Backend {
 public:
  // `make_store(arena)` builds the container (the B-tree takes its nodes
  // from the arena).
  template <typename MakeStore>
  MemoryBackend(json config, bool use_lock, size_t prefault_max, MakeStore make_store,
                bool key_value = true, bool bytewise = true)
      : config_(std::move(config)),
        lock_(use_lock),
        key_value_(key_value),
        bytewise_(bytewise),
        arena_(prefault_max),
        data_(make_store(arena_)) {}

  ~MemoryBackend() override {
    for (const auto& slot : data_) memory::Record::destroy(arena_, slot.get());
  }

  BackendTraits traits() const override {
    BackendTraits t{kSorted, kValues, false};
    t.key_value = key_value_;
    t.bytewise = bytewise_;
    return t;
  }
  json config() const override { return config_; }

  Status put(std::string_view key, std::string_view value) override {
    if (!kValues && !value.empty()) return Status::YOKAN_ERR_INVALID_ARGS;
    std::unique_lock<OptionalLock> guard(lock_);
    store(key, value);
    return Status::YOKAN_SUCCESS;
  }

  Status put_batch(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) override {
    if (!kValues)
      for (const auto& p : pairs)
        if (!p.second.empty()) return Status::YOKAN_ERR_INVALID_ARGS;
    std::unique_lock<OptionalLock> guard(lock_);
    auto near = data_.end();
    for (const auto& [key, value] : pairs) near = store(key, value, near);
    return Status::YOKAN_SUCCESS;
  }

  Status get(std::string_view key, const ValueVisitor& visit) override {
    std::shared_lock<OptionalLock> guard(lock_);
    auto it = data_.find(key);
    if (it == data_.end()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
    visit(it->record().value());
    return Status::YOKAN_SUCCESS;
  }

  Status lend(std::string_view key, const ValueVisitor& visit,
              std::shared_ptr<const void>* owner) override {
    std::shared_lock<OptionalLock> guard(lock_);
    auto it = data_.find(key);
    if (it == data_.end()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
    if (auto block = it->record().shared()) *owner = std::move(block);
    visit(it->record().value());
    return Status::YOKAN_SUCCESS;
  }

  Status get_batch(const std::vector<std::string_view>& keys,
                   const BatchValueVisitor& visit) override {
    std::shared_lock<OptionalLock> guard(lock_);
    auto near = data_.end();
    for (size_t i = 0; i < keys.size(); ++i) {
      auto [it, found] = locate(keys[i], near);
      if (!found) {
        visit(i, nullptr);
        continue;
      }
      std::string_view value = it->record().value();
      visit(i, &value);
      near = it;
    }
    return Status::YOKAN_SUCCESS;
  }

  Status length(std::string_view key, size_t* size) override {
    std::shared_lock<OptionalLock> guard(lock_);
    auto it = data_.find(key);
    if (it == data_.end()) return Status::YOKAN_ERR_KEY_NOT_FOUND;
    *size = it->record().value().size();
    return Status::YOKAN_SUCCESS;
  }

  Status erase(std::string_view key) override {
    std::unique_lock<OptionalLock> guard(lock_);
    auto it = data_.find(key);
    if (it == data_.end()) return Status::YOKAN_SUCCESS;
    memory::Record* record = it->get();
    data_.erase(it);
    memory::Record::destroy(arena_, record);
    return Status::YOKAN_SUCCESS;
  }

  Status count(uint64_t* n) override {
    std::shared_lock<OptionalLock> guard(lock_);
    *n = data_.size();
    return Status::YOKAN_SUCCESS;
  }

  Status iterate(std::string_view from, bool inclusive, bool, const PairVisitor& visit) override {
    std::shared_lock<OptionalLock> guard(lock_);
    auto it = data_.begin();
    if constexpr (kSorted) {
      if (!from.empty()) {
        it = inclusive ? data_.lower_bound(from) : data_.upper_bound(from);
      }
    }
    for (; it != data_.end(); ++it)
      if (!visit(it->key(), it->record().value())) break;
    return Status::YOKAN_SUCCESS;
  }

  // Faults in memory for the next records (see memory_arena.hpp).
  bool use_idle_time() override { return arena_.prefault(); }

 private:
  using Iter = typename Container::iterator;

  // Where `key` is (found) or would go. Batches often come in key order
  // (names with an index), so a sorted map first tries the slot right after
  // `near`, the previous batch item: one comparison for a key that is there
  // (an overwrite or a read in order), three for a new key that goes there,
  // instead of a walk down the tree.
  std::pair<Iter, bool> locate(std::string_view key, Iter near) {
    if constexpr (kSorted) {
      const auto& order = data_.key_comp();
      if (near != data_.end()) {
        // The last element's successor is end(); std::next would climb the
        // whole right spine of the tree to find that out.
        auto next = near == std::prev(data_.end()) ? data_.end() : std::next(near);
        if (next != data_.end() && order.same(next->key(), key)) return {next, true};
        if (order(near->key(), key) && (next == data_.end() || order(key, next->key())))
          return {next, false};
      }
      auto it = data_.lower_bound(key);
      return {it, it != data_.end() && !order(key, it->key())};
    } else {
      auto it = data_.find(key);
      return {it, it != data_.end()};
    }
  }

  // Inserts or overwrites; returns the pair's position (the next call's hint).
  Iter store(std::string_view key, std::string_view value, Iter near) {
    auto [it, found] = locate(key, near);
    if (found) {
      it->assign(arena_, value);
      return it;
    }
    memory::Slot slot(memory::Record::create(arena_, key, value));
    try {
      if constexpr (kSorted)
        return data_.insert(it, slot);
      else
        return data_.insert(slot).first;
    } catch (...) {
      memory::Record::destroy(arena_, slot.get());
      throw;
    }
  }

  void store(std::string_view key, std::string_view value) { store(key, value, data_.end()); }

  json config_;
  OptionalLock lock_;
  bool key_value_;
  bool bytewise_;
  memory::RecordArena arena_;  // outlives data_, whose nodes and records it holds
  Container data_;
};

// Bytewise order of short keys without a call into memcmp: eight bytes at a
// time, compared as big-endian words. Long keys go to memcmp.
inline int bytewise_compare(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  if (n > 64) return a.compare(b);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    if (x != y) return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
  }
  for (; i < n; ++i) {
    auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x != y) return x < y ? -1 : 1;
  }
  return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
}

// The order of map/set: bytewise, or a user function loaded by name.
// Compares stored slots and plain keys alike.
struct KeyOrder {
  using Less = bool (*)(const void*, size_t, const void*, size_t);
  using is_transparent = void;  // lets find/lower_bound take a string_view
  Less less = nullptr;
  template <typename A, typename B>
  bool operator()(const A& x, const B& y) const {
    std::string_view a = memory::key_of(x), b = memory::key_of(y);
    return less ? less(a.data(), a.size(), b.data(), b.size()) : bytewise_compare(a, b) < 0;
  }
  bool same(std::string_view a, std::string_view b) const {
    if (less)
      return !less(a.data(), a.size(), b.data(), b.size()) &&
             !less(b.data(), b.size(), a.data(), a.size());
    return a.size() == b.size() && bytewise_compare(a, b) == 0;
  }
};

// Resolves "symbol" (in the process) or "libfile.so:symbol" to a comparator
// `bool less(const void* a, size_t asize, const void* b, size_t bsize)`.
KeyOrder::Less load_comparator(const std::string& descriptor) {
  auto colon = descriptor.rfind(':');
  std::string lib = colon == std::string::npos ? "" : descriptor.substr(0, colon);
  std::string symbol = colon == std::string::npos ? descriptor : descriptor.substr(colon + 1);
  void* handle = dlopen(lib.empty() ? nullptr : lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw ConfigError("\"comparator\": cannot load \"" + lib + "\": " + dlerror());
  void* fn = dlsym(handle, symbol.c_str());  // the library stays loaded: the map uses it
  if (!fn) throw ConfigError("\"comparator\": no symbol \"" + symbol + "\" in \"" + lib + "\"");
  return reinterpret_cast<KeyOrder::Less>(fn);
}

// How far ahead of a growing store idle time may fault in memory, at most.
constexpr uint64_t kDefaultPrefaultMax = 16 << 20;
// A larger setting is refused: the memory is resident as soon as it is
// faulted in, whatever the store ends up holding.
constexpr uint64_t kLargestPrefaultMax = uint64_t(1) << 30;

uint64_t read_prefault_max(ConfigReader& r) {
  return r.get_uint_at_most("prefault_max_bytes", kDefaultPrefaultMax, kLargestPrefaultMax);
}

template <typename Container, bool kSorted, bool kValues>
BackendFactory memory_factory(const char* name) {
  return [name](const json& config, std::unique_ptr<Backend>* out, std::string* error) {
    return with_config_errors(error, [&] {
      ConfigReader r(config, std::string(name) + " config");
      bool use_lock = r.get_bool("use_lock", true);
      KeyOrder order;
      size_t buckets = 0;
      if constexpr (kSorted) {
        std::string cmp = r.get_string("comparator", "default");
        if (cmp != "default") order.less = load_comparator(cmp);
      } else {
        // A hint; capped so a typo cannot reserve the machine's memory up front.
        buckets = std::min<uint64_t>(r.get_uint("initial_bucket_count", 23), 1u << 20);
      }
      uint64_t prefault_max = read_prefault_max(r);
      r.sub("allocators");  // accepted for compatibility; records use the arena
      r.put("allocators", json::object());
      r.get_bool("disable_doc_mixin_lock", false);
      json completed = r.finish();
      auto make_store = [order, buckets](memory::RecordArena& arena) {
        if constexpr (kSorted) {
          return Container(order, memory::ArenaAllocator<memory::Slot>(arena));
        } else {
          return Container(buckets);
        }
      };
      *out = std::make_unique<MemoryBackend<Container, kSorted, kValues>>(
          completed, use_lock, prefault_max, make_store, true, order.less == nullptr);
      return Status::YOKAN_SUCCESS;
    });
  };
}

// Hash and equality of the unordered stores, on slots and plain keys alike.
struct KeyHash {
  using is_transparent = void;
  template <typename K>
  size_t operator()(const K& k) const {
    return absl::Hash<std::string_view>{}(memory::key_of(k));
  }
};
struct KeyEqual {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return memory::key_of(a) == memory::key_of(b);
  }
};

using OrderedStore = absl::btree_set<memory::Slot, KeyOrder, memory::ArenaAllocator<memory::Slot>>;
// A hash table's array grows by doubling, mostly to sizes the arena passes
// on to operator new anyway: it stays on the general heap.
using HashStore = absl::flat_hash_set<memory::Slot, KeyHash, KeyEqual>;

// Discards writes; reports every key as absent.
class NullBackend final : public Backend {
 public:
  explicit NullBackend(json config) : config_(std::move(config)) {}
  BackendTraits traits() const override { return {false, true, false}; }
  json config() const override { return config_; }
  Status put(std::string_view, std::string_view) override { return Status::YOKAN_SUCCESS; }
  Status get(std::string_view, const ValueVisitor&) override {
    return Status::YOKAN_ERR_KEY_NOT_FOUND;
  }
  Status erase(std::string_view) override { return Status::YOKAN_SUCCESS; }
  Status count(uint64_t* n) override {
    *n = 0;
    return Status::YOKAN_SUCCESS;
  }
  Status iterate(std::string_view, bool, bool, const PairVisitor&) override {
    return Status::YOKAN_SUCCESS;
  }

 private:
  json config_;
};

}  // namespace

void register_backend_map(std::map<std::string, BackendFactory>& r) {
  r["map"] = memory_factory<OrderedStore, true, true>("map");
}
void register_backend_unordered_map(std::map<std::string, BackendFactory>& r) {
  r["unordered_map"] = memory_factory<HashStore, false, true>("unordered_map");
}
void register_backend_set(std::map<std::string, BackendFactory>& r) {
  r["set"] = memory_factory<OrderedStore, true, false>("set");
}
void register_backend_unordered_set(std::map<std::string, BackendFactory>& r) {
  r["unordered_set"] = memory_factory<HashStore, false, false>("unordered_set");
}
// array: an in-memory document store (collections only), as upstream's.
void register_backend_array(std::map<std::string, BackendFactory>& r) {
  r["array"] = [](const json& config, std::unique_ptr<Backend>* out, std::string* error) {
    return with_config_errors(error, [&] {
      ConfigReader c(config, "array config");
      bool use_lock = c.get_bool("use_lock", true);
      uint64_t prefault_max = read_prefault_max(c);
      json completed = c.finish();
      auto make_store = [](memory::RecordArena& arena) {
        return OrderedStore(KeyOrder(), memory::ArenaAllocator<memory::Slot>(arena));
      };
      *out = std::make_unique<MemoryBackend<OrderedStore, true, true>>(
          completed, use_lock, prefault_max, make_store, false);
      return Status::YOKAN_SUCCESS;
    });
  };
}

void register_backend_null(std::map<std::string, BackendFactory>& r) {
  r["null"] = [](const json& config, std::unique_ptr<Backend>* out, std::string* error) {
    if (!config.is_object()) {
      if (error) *error = "null config must be a JSON object";
      return Status::YOKAN_ERR_INVALID_CONFIG;
    }
    *out = std::make_unique<NullBackend>(config);
    return Status::YOKAN_SUCCESS;
  };
}

}  // namespace yokan
