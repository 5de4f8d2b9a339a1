// The C++ client API: Client (per engine) and Database (a handle on one
// provider's database).
//
// Every Database method may block (an RPC) and throws yokan::Exception on
// failure: YOKAN_ERR_INVALID_ARGS for an empty key, YOKAN_ERR_MODE for an
// incompatible mode pair (both before any RPC), the provider's status
// otherwise, YOKAN_ERR_TIMEOUT when `timeout_ms` (> 0) passes, and
// YOKAN_ERR_FROM_MERCURY when the transport fails or the provider dies.
//
// Ownership: keys and values are borrowed for the duration of the call;
// output buffers are written in place. Thread-safety: a Database may be used
// from several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "yokan/engine.hpp"

namespace yokan {

using Keys = std::vector<std::string_view>;

class Database {
 public:
  Database(std::shared_ptr<Engine> engine, EndpointPtr endpoint, uint16_t provider_id);

  uint64_t count(int32_t mode, double timeout_ms) const;
  // keys[i] -> values[i]. With NEW_ONLY/EXIST_ONLY a single pair that fails its
  // condition throws; in a batch such pairs are skipped.
  void put(int32_t mode, const Keys& keys, const Keys& values, double timeout_ms) const;
  // Values into separate buffers; sizes[i] = value size, KEY_NOT_FOUND or SIZE_TOO_SMALL.
  std::vector<uint64_t> get(int32_t mode, const Keys& keys, const std::vector<Destination>& out,
                            double timeout_ms) const;
  // Values back to back into one buffer (same size conventions).
  std::vector<uint64_t> get_packed(int32_t mode, const Keys& keys, Destination out,
                                   double timeout_ms) const;
  // Values of any size, back to back into `values` (absent keys take no space).
  std::vector<uint64_t> get_alloc(int32_t mode, const Keys& keys, Buffer* values,
                                  double timeout_ms) const;
  std::vector<bool> exists(int32_t mode, const Keys& keys, double timeout_ms) const;
  // Sizes, KEY_NOT_FOUND for absent keys.
  std::vector<uint64_t> length(int32_t mode, const Keys& keys, double timeout_ms) const;
  void erase(int32_t mode, const Keys& keys, double timeout_ms) const;

  // Erases every key that starts with `prefix` ("" erases everything).
  void erase_range(int32_t mode, std::string_view prefix, double timeout_ms) const;

  // Listing (sorted backends). Up to `count` items after `from` (at it with
  // INCLUSIVE) that pass `filter` (a prefix, a suffix with SUFFIX, Lua code
  // with LUA_FILTER). Layouts: one destination per slot, one packed
  // destination for all keys (and one for all values), or kAlloc where the
  // data comes back in ListResult::keys / ::values. Fewer sizes than `count`
  // means the end was reached; SIZE_TOO_SMALL marks an item that did not fit.
  enum class ListLayout { kSlots, kPacked, kAlloc };
  struct ListResult {
    std::vector<uint64_t> key_sizes, value_sizes;
    Buffer keys, values;  // kAlloc only
  };
  ListResult list(int32_t mode, std::string_view from, std::string_view filter, uint64_t count,
                  bool with_values, ListLayout layout, const std::vector<Destination>& key_out,
                  const std::vector<Destination>& value_out, double timeout_ms) const;

  // list() with the kAlloc layout in two steps, so that the caller can work
  // while the provider lists: the request is sent now (throws as list()
  // does if it cannot be), and finish() waits for the page. Dropping a
  // PendingList unfinished gives the page up.
  class PendingList {
   public:
    ListResult finish();  // at most once; throws as list() does
    bool with_values() const { return with_values_; }

   private:
    friend class Database;
    std::unique_ptr<CallInFlight> call_;
    uint64_t count_ = 0;
    bool with_values_ = false;
  };
  PendingList list_start(int32_t mode, std::string_view from, std::string_view filter,
                         uint64_t count, bool with_values, double timeout_ms) const;

  uint16_t provider_id() const { return provider_id_; }
  std::string address() const;
  // The UCX transports this handle's connection uses (diagnostics).
  std::string transport_info() const;

 private:
  friend class Client;
  friend class Collection;
  friend class ShardedDatabase;
  // Sends one RPC and returns its reply; throws on any failure status.
  Reply call(uint16_t rpc, std::string_view meta, const std::vector<Segment>& body,
             double timeout_ms, int32_t mode, const Scatter* scatter = nullptr) const;
  // call() without a body in two steps: start() sends (throws if it cannot),
  // finish() waits and throws on any failure status, as call() does.
  std::unique_ptr<CallInFlight> start(uint16_t rpc, std::string meta, double timeout_ms,
                                      int32_t mode, const std::vector<Segment>& body = {}) const;
  static Reply finish(std::unique_ptr<CallInFlight> call);

  std::shared_ptr<Engine> engine_;
  EndpointPtr endpoint_;
  uint16_t provider_id_;
};

class Client {
 public:
  explicit Client(std::shared_ptr<Engine> engine);
  // Resolves `address` and, when `check`, verifies that a Yokan provider with
  // that id is there (YOKAN_ERR_INVALID_PROVIDER otherwise).
  Database make_database_handle(const std::string& address, uint16_t provider_id,
                                bool check = true) const;
  const std::shared_ptr<Engine>& engine() const { return engine_; }

 private:
  std::shared_ptr<Engine> engine_;
};

}  // namespace yokan
