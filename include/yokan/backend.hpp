// The storage backend interface.
//
// A backend sees byte spans and returns a Status; it never sees RPCs, wire
// encoding, modes or Python. Modes (APPEND, NEW_ONLY, CONSUME, WAIT, filters...)
// are implemented once, above the backend, by the provider.
//
// Thread-safety: every method may be called concurrently from several handler
// threads; a backend protects its own state (or declares use_lock=false in its
// config and leaves it to the caller). The provider serialises conditional
// writes on the same key, so a backend only needs each call to be atomic.
//
// Ownership: spans passed in are only valid for the duration of the call; spans
// passed to visitors are only valid during the visitor call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yokan/common.hpp"

namespace yokan {

using json = nlohmann::json;

// What a backend can do; the provider answers unsupported operations from it.
struct BackendTraits {
  bool sorted = false;      // iterate() yields keys in order and honours `from`
  bool values = true;       // can store non-empty values (false for set / unordered_set)
  bool persistent = false;  // data survives the process (files on disk)
  // false: a document store only (array, log); key/value RPCs answer
  // YOKAN_ERR_OP_UNSUPPORTED and only the collection API reaches the data.
  bool key_value = true;
  // The order of a sorted backend is plain bytewise (false for a map with a
  // custom comparator): prefix ranges are then contiguous and can end a scan.
  bool bytewise = true;
  // write_batch / put_batch / erase_batch apply all of a batch or none of it,
  // also across a crash of the process (a SIGKILL mid-batch leaves none of it).
  // false: a batch that fails may leave a prefix of it applied (see README).
  bool atomic_batches = false;
};

// Called for each pair during iteration; return false to stop early.
using PairVisitor = std::function<bool(std::string_view key, std::string_view value)>;
// Called once with the value of a key that was found.
using ValueVisitor = std::function<void(std::string_view value)>;
// Called once per key of a batch, in order: its value, or null if absent.
using BatchValueVisitor = std::function<void(size_t index, const std::string_view* value)>;

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendTraits traits() const = 0;
  // The backend's complete configuration, defaults filled in.
  virtual json config() const = 0;

  // Store (or overwrite) one pair.
  virtual Status put(std::string_view key, std::string_view value) = 0;
  // Store several pairs. Default: put() each in turn (not atomic); backends
  // with atomic batches route it to write_batch().
  virtual Status put_batch(const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
  // Erase several keys (absent ones are not an error). Default: write_batch().
  virtual Status erase_batch(const std::vector<std::string_view>& keys);
  // Erase `erases`, then store `puts` (a key in both ends up stored), as one
  // write. With traits().atomic_batches it applies whole or not at all: on an
  // error nothing of it is visible, now or after a restart. Default: erase()
  // each key, then put_batch(): an error may leave a prefix applied.
  virtual Status write_batch(
      const std::vector<std::string_view>& erases,
      const std::vector<std::pair<std::string_view, std::string_view>>& puts);
  // Call `visit` with the value; YOKAN_ERR_KEY_NOT_FOUND if absent.
  virtual Status get(std::string_view key, const ValueVisitor& visit) = 0;
  // get() for each key in turn; stops at the first error other than a missing
  // key. Backends that can read a batch faster (one lock, nearby keys) override it.
  virtual Status get_batch(const std::vector<std::string_view>& keys,
                           const BatchValueVisitor& visit);
  // get(), and when the backend can lend this value without copying it, it
  // also sets `*owner` before calling `visit`: the view passed to `visit` then
  // stays valid for as long as `*owner` (or a copy) lives, whatever writes
  // happen meanwhile. Default: get(), never lends.
  virtual Status lend(std::string_view key, const ValueVisitor& visit,
                      std::shared_ptr<const void>* owner);
  // Value size; YOKAN_ERR_KEY_NOT_FOUND if absent. Default: through get().
  virtual Status length(std::string_view key, size_t* size);
  virtual Status exists(std::string_view key, bool* found);
  // Erase one key; erasing an absent key is not an error.
  virtual Status erase(std::string_view key) = 0;
  // Number of keys. Default: counts through iterate().
  virtual Status count(uint64_t* n);

  // Visit pairs. On sorted backends, in bytewise key order, starting at `from`
  // (included if `inclusive`, else the first key after it; "" means the start).
  // Unsorted backends visit every pair in their own order and ignore `from`.
  // `want_values` = false lets a backend pass empty values cheaply.
  virtual Status iterate(std::string_view from, bool inclusive, bool want_values,
                         const PairVisitor& visit) = 0;

  // Make everything acknowledged so far durable (no-op for in-memory backends).
  virtual Status flush() { return Status::YOKAN_SUCCESS; }

  // Snapshot support (docs/snapshot.rst). Writes a consistent copy of the
  // whole database into the directory `dir`, which does not exist yet, using
  // the library's own facility, so that writers need not be paused (RocksDB's
  // checkpoint, LMDB's environment copy). Opening a backend of the same type
  // with "path" set to `dir` must then find the data. On failure `dir` may be
  // left half-written (the caller removes it) and `*error` says why.
  // Default: YOKAN_ERR_OP_UNSUPPORTED; the provider then dumps every pair with
  // iterate() while it holds its writers back.
  virtual Status checkpoint(const std::string& dir, std::string* error) {
    (void)dir;
    (void)error;
    return Status::YOKAN_ERR_OP_UNSUPPORTED;
  }

  // Called by the provider while its engine has nothing else to do: a short
  // step of background work (a few µs; the in-memory backends fault in the
  // memory of future records). Returns true if there is more to do. May run
  // concurrently with any other call. Default: nothing.
  virtual bool use_idle_time() { return false; }
};

// Failure messages. A backend that fails a call may explain it in its
// library's words ("IO error: ... No space left on device"): it returns
// fail(status, message), which records the message for the calling thread,
// and the provider sends that message to the client with the status.
// Nothing is recorded on success, so the cost is on failures only.
// Thread-safety: per thread; a handler reads on the thread that called the backend.
Status fail(Status s, std::string message);
// The message that fail() recorded on this thread for status `s` since the
// last reset_failure(), or "" if none; taking it clears it.
std::string take_failure(Status s);
// Forgets any recorded message (the provider calls it before each request,
// so that a message never outlives the request that caused it).
void reset_failure() noexcept;

// Creates a backend from its JSON config. On failure returns a status (usually
// YOKAN_ERR_INVALID_CONFIG) and a message naming the offending key in `error`.
using BackendFactory =
    std::function<Status(const json& config, std::unique_ptr<Backend>* out, std::string* error)>;

// Registry of compiled-in backends (held inside a function, filled on first use).
Status create_backend(const std::string& type, const json& config, std::unique_ptr<Backend>* out,
                      std::string* error);
std::vector<std::string> available_backends();

}  // namespace yokan
