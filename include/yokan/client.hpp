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

class Database;

// A call made by one of the *_start methods (Database, Collection): its
// request is on its way; finish() collects the reply and decodes it as the
// blocking method does. Given a Completion, the call reports to its queue
// when ready() and finish() then never blocks; it also owns copies of its
// request and reply, so that destroying it unfinished (a cancelled caller)
// gives the call up at once: a late reply is dropped, and output buffers
// (written by finish() only) are never touched after that.
// Thread-safety: one thread at a time. Errors: the *_start method throws
// what the blocking method throws before its RPC; finish() the rest.
template <typename T>
class Started {
 public:
  using Decode = std::function<T(Reply&)>;
  Started() = default;
  // `call` null: nothing was sent (an empty batch); finish() decodes an empty reply.
  Started(std::unique_ptr<CallInFlight> call, Decode decode)
      : call_(std::move(call)), decode_(std::move(decode)) {}

  // True if a request went out (else the result is known already).
  bool sent() const { return sent_ || call_ != nullptr; }
  // True once finish() will not wait for the peer.
  bool ready() const { return !call_ || call_->ready(); }
  // At the caller's deadline: unless the reply is in, gives the call up;
  // finish() then throws YOKAN_ERR_TIMEOUT. No-op once finished.
  void expire();
  // The decoded result (at most once; YOKAN_ERR_INVALID_ARGS the second time).
  T finish();

 private:
  std::unique_ptr<CallInFlight> call_;
  Decode decode_;
  Status status_ = Status::YOKAN_SUCCESS;
  Reply reply_;
  bool sent_ = false;
  bool finished_ = false;
};

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
  // Bytes [offset, offset + length) of `key`'s value, clipped to the value
  // (empty past its end); with `from_end`, its last min(length, size) bytes
  // (`offset` is ignored then). Only those bytes cross the wire, though the
  // provider's backend may read the whole value. value_size is the value's
  // full size, KEY_NOT_FOUND if absent (then `bytes` is empty). Throws
  // INVALID_ARGS for an empty key, MODE for CONSUME.
  struct RangeResult {
    uint64_t value_size = 0;
    Buffer bytes;
  };
  RangeResult get_range(int32_t mode, std::string_view key, uint64_t offset, uint64_t length,
                        bool from_end, double timeout_ms) const;
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

  // The two-step forms (see Started): each sends the request now and
  // decodes the reply in finish(), with the blocking method's encoder and
  // decoder. Output destinations (get_start, get_packed_start, list_start
  // with kSlots/kPacked) are written by finish() and must stay valid until
  // then or until the Started is destroyed. list_start lets a scan request
  // page k+1 while the caller works through page k.
  struct AllocResult {
    std::vector<uint64_t> sizes;
    Buffer values;
  };
  Started<uint64_t> count_start(int32_t mode, double timeout_ms, const Completion& done = {}) const;
  Started<void> put_start(int32_t mode, const Keys& keys, const Keys& values, double timeout_ms,
                          const Completion& done = {}) const;
  Started<std::vector<uint64_t>> get_start(int32_t mode, const Keys& keys,
                                           const std::vector<Destination>& out, double timeout_ms,
                                           const Completion& done = {}) const;
  Started<std::vector<uint64_t>> get_packed_start(int32_t mode, const Keys& keys, Destination out,
                                                  double timeout_ms,
                                                  const Completion& done = {}) const;
  Started<AllocResult> get_alloc_start(int32_t mode, const Keys& keys, double timeout_ms,
                                       const Completion& done = {}) const;
  Started<RangeResult> get_range_start(int32_t mode, std::string_view key, uint64_t offset,
                                       uint64_t length, bool from_end, double timeout_ms,
                                       const Completion& done = {}) const;
  Started<std::vector<bool>> exists_start(int32_t mode, const Keys& keys, double timeout_ms,
                                          const Completion& done = {}) const;
  Started<std::vector<uint64_t>> length_start(int32_t mode, const Keys& keys, double timeout_ms,
                                              const Completion& done = {}) const;
  Started<void> erase_start(int32_t mode, const Keys& keys, double timeout_ms,
                            const Completion& done = {}) const;
  Started<void> erase_range_start(int32_t mode, std::string_view prefix, double timeout_ms,
                                  const Completion& done = {}) const;
  using PendingList = Started<ListResult>;
  PendingList list_start(int32_t mode, std::string_view from, std::string_view filter,
                         uint64_t count, bool with_values, ListLayout layout,
                         const std::vector<Destination>& key_out,
                         const std::vector<Destination>& value_out, double timeout_ms,
                         const Completion& done = {}) const;

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
                                      int32_t mode, const std::vector<Segment>& body = {},
                                      const Completion& done = {}) const;
  static Reply finish(std::unique_ptr<CallInFlight> call);

 public:
  // The reply of a call that ended with `s`; throws on any failure status
  // (the transport's detail, or the provider's message, in the text).
  static Reply checked(Status s, Reply reply);

 private:
  std::shared_ptr<Engine> engine_;
  EndpointPtr endpoint_;
  uint16_t provider_id_;
};

template <typename T>
void Started<T>::expire() {
  if (!call_ || finished_) return;
  status_ = call_->expire(&reply_);
  call_.reset();
  sent_ = true;
}

template <typename T>
T Started<T>::finish() {
  if (finished_)
    throw Exception(Status::YOKAN_ERR_INVALID_ARGS, "this reply was collected already");
  finished_ = true;
  if (call_) {
    status_ = call_->wait(&reply_);
    call_.reset();
    sent_ = true;
  }
  Reply reply = Database::checked(status_, std::move(reply_));
  return decode_(reply);
}

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
